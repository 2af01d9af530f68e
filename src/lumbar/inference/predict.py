"""`lumbar predict`: one DICOM study -> per-disc states with probabilities and Grad-CAM maps.

The study goes through the same code as training data (DESIGN.md pipeline): `lumbar.ingest`
indexes it, classifies its series, selects the paper's axial frames per disc level (Eq. 1-2),
windows and de-identifies them, into a private temporary folder. Each axial image is cropped
with the run's ROI, prepared by the training loader's `load_image`, classified, and explained
with `lumbar.explain.GradCAM`. The result is written as `prediction.json`, `prediction.csv`,
one-page `summary.html`, and the five images with their heat maps.

A `Predictor` holds a loaded model and is reused across studies (the HTTP service keeps one);
its model runs one study at a time (`Predictor.lock`) and so does the ingest step (see
`_INGEST_LOCK`), so one study's ingest overlaps another's model run.

Example:
    >>> predictor = Predictor.load(Path("runs/effnet-finetune"))
    >>> result = predictor.predict_study(Path("studies/patient-0001"), Path("out"))
    >>> result["discs"][0]["probabilities"]
    {'normal': 0.93, 'abnormal': 0.07}
"""

from __future__ import annotations

import csv
import html
import io
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lumbar.data.roi import image_roi
from lumbar.errors import UserError
from lumbar.explain import GradCAM, class_names, load_run, prepare_image
from lumbar.files import write_bytes_atomic, write_csv_atomic, write_json_atomic, write_text_atomic
from lumbar.grading import DiscLevel
from lumbar.ingest import IngestOptions, NoUsableImages, ingest
from lumbar.ingest.classify import SeriesClass
from lumbar.visualize.overlays import overlay

__all__ = ["Predictor", "predict", "run_roi", "set_threads"]

PREDICTION_JSON = "prediction.json"
PREDICTION_CSV = "prediction.csv"
SUMMARY_HTML = "summary.html"
AXIAL_VIEW = SeriesClass.AXIAL_T2.value

# `lumbar.ingest` keeps per-process state in module globals (the header reader's pseudonym
# secret, its keyword tables), so two ingests in threads of one process would mix them up.
# Ingests therefore run one at a time; a study's ingest still overlaps another's model run.
_INGEST_LOCK = threading.Lock()


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads for the model (0 keeps PyTorch's default).

    On a machine shared with other jobs one thread is often faster than all cores (measured:
    EfficientNet-Lite0 study p50 0.61 s with 1 thread vs 1.05 s with 2 on a busy 2-core host).

    Raises:
        UserError: a negative count.
    """
    if threads < 0:
        raise UserError(f"threads must be 0 (default) or more, got {threads}", option="threads")
    if threads:
        torch.set_num_threads(threads)


def run_roi(config: dict[str, Any]) -> tuple[str, str]:
    """The crop a run's model expects on a full axial frame, and where that was read from.

    A run trained on a manifest already cropped by `lumbar roi` records `roi: none` (its loader
    crops nothing); the crop then comes from the manifest's `roi` column for axial rows.

    Returns:
        (ROI spelling, source): source is "run", "manifest", or "unknown" (no crop found).
    """
    spec = str(config.get("roi") or "none")
    if spec != "none":
        return spec, "run"
    manifest = config.get("manifest")
    if manifest and Path(manifest).is_file():
        with open(manifest, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("view", AXIAL_VIEW) == AXIAL_VIEW and row.get("roi"):
                    return row["roi"], "manifest"
        return "none", "manifest"
    return "none", "unknown"


@dataclass
class Predictor:
    """A run's model ready for studies: ROI, class names, Grad-CAM layer.

    Use `Predictor.load(run_dir)`.
    """

    model: Any
    config: dict[str, Any]
    run_dir: Path
    roi: Any
    roi_source: str
    classes: list[str]
    layer: str = "features"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, run_dir: Path, *, roi: str | None = None, layer: str = "features") -> Predictor:
        """Load the run's model (see `lumbar.explain.load_run`); `roi` overrides its crop.

        Raises:
            UserError: not a run folder, or one this version cannot load; a bad ROI.
        """
        model, config = load_run(Path(run_dir))
        if roi is not None:
            spec, source = roi, "option"
        else:
            spec, source = run_roi(config)
        GradCAM(model, layer)  # validate the layer now, not at the first study
        return cls(
            model=model,
            config=config,
            run_dir=Path(run_dir),
            roi=image_roi(spec, "prediction"),
            roi_source=source,
            classes=class_names(config),
            layer=layer,
        )

    def probabilities(self, paths: Sequence[Path]) -> np.ndarray:
        """Class probabilities (N, classes) of axial disc images, each cropped to the run's ROI
        and prepared as in `predict_study` (one batch; one call at a time)."""
        batch = torch.cat(
            [prepare_image(path, self.roi, self.model.preprocessing)[1] for path in paths]
        )
        with self.lock, torch.no_grad():
            return torch.softmax(self.model.eval()(batch), dim=1).numpy()

    def model_info(self) -> dict[str, Any]:
        """What the output says about the model (no paths: they may name people or hosts)."""
        return {
            "run": self.run_dir.resolve().name,
            "backbone": self.config.get("backbone"),
            "target": self.config.get("target"),
            "classes": self.classes,
            "roi": self.roi.spec,
            "roi_source": self.roi_source,
            "gradcam_layer": self.layer,
        }

    def predict_study(
        self, study: Path, out: Path | None = None, *, work: Path | None = None
    ) -> dict[str, Any]:
        """Predict every axial disc image of one study; write the outputs to `out` if given.

        Args:
            study: a folder of the study's DICOM files (any layout, as `lumbar ingest` reads).
            out: output folder (created; its files are replaced).
            work: folder for the intermediate ingest (default: a private temporary folder,
                removed afterwards).

        Returns:
            The prediction (the content of prediction.json), plus, under the key "_images",
            in-memory PNG bytes of each level's image and heat map (not written to JSON).

        Raises:
            UserError: no DICOM, several patients, or no usable axial T2 series (naming what
                was found instead).
        """
        start = time.perf_counter()
        own_work = work is None
        work_dir = Path(tempfile.mkdtemp(prefix="lumbar-predict-")) if own_work else Path(work)
        try:
            axial, patient, found = self._ingest(Path(study), work_dir / "ingest")
            ingest_seconds = time.perf_counter() - start
            discs, pictures = self._classify(axial)
        finally:
            if own_work:
                shutil.rmtree(work_dir, ignore_errors=True)
        result: dict[str, Any] = {
            "study": patient,
            "model": self.model_info(),
            "discs": discs,
            "series_found": found,
            "missing_levels": [lv for lv in _levels() if lv not in {d["level"] for d in discs}],
            "seconds": {
                "ingest": round(ingest_seconds, 3),
                "total": round(time.perf_counter() - start, 3),
            },
        }
        if out is not None:
            self.write(result, pictures, Path(out))
        result["_images"] = pictures
        return result

    # ------------------------------------------------------------------ steps

    def _ingest(self, study: Path, work: Path) -> tuple[list[tuple[str, Path]], str, list[str]]:
        """(level, image) of the selected axial frames, the pseudonym, the views found.

        The selection comes from the ingest's result in memory; its PNGs are in `work`.
        """
        if not study.is_dir():
            raise UserError(f"study {study.name} is not a folder of DICOM files")
        try:
            with _INGEST_LOCK:
                summary = ingest(study, work, IngestOptions(workers=1))
        except NoUsableImages:
            raise UserError(
                "the study holds no usable DICOM series (no axial T2, sagittal T2 or "
                "myelography images were found)"
            ) from None
        patients = sorted({image.patient_id for image in summary.selected})
        if len(patients) > 1:
            raise UserError(
                f"the folder holds {len(patients)} patients; `lumbar predict` takes one study"
            )
        found = sorted({image.view for image in summary.selected})
        axial = [(im.level, work / im.image) for im in summary.selected if im.view == AXIAL_VIEW]
        if not axial:
            reasons = {
                row.reason
                for row in summary.report
                if AXIAL_VIEW in row.reason and row.severity == "error"
            }
            why = f" ({'; '.join(sorted(reasons))})" if reasons else ""
            raise UserError(
                f"the study has no usable axial T2 series{why}; found only: "
                f"{', '.join(found) or 'nothing usable'}"
            )
        return axial, patients[0], found

    def _classify(
        self, axial: list[tuple[str, Path]]
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, bytes]]]:
        """Per-level class probabilities and Grad-CAM overlays, in one batch."""
        prepared = [prepare_image(path, self.roi, self.model.preprocessing) for _, path in axial]
        batch = torch.cat([x for _, x in prepared])
        with self.lock:
            result = GradCAM(self.model, self.layer)(batch)
        discs: list[dict[str, Any]] = []
        pictures: dict[str, dict[str, bytes]] = {}
        for k, (level, _) in enumerate(axial):
            display = prepared[k][0]
            probs = result.probabilities[k]
            predicted = int(np.argmax(probs))
            heat = result.heatmaps[k]
            row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
            discs.append(
                {
                    "level": level,
                    "predicted": self.classes[predicted],
                    "probability": round(float(probs[predicted]), 5),
                    "probabilities": {
                        c: round(float(p), 5) for c, p in zip(self.classes, probs, strict=True)
                    },
                    "heatmap_peak": {
                        "x": round((col + 0.5) * display.shape[1] / heat.shape[1], 1),
                        "y": round((row + 0.5) * display.shape[0] / heat.shape[0], 1),
                    },
                    "image": f"images/{level}.png",
                    "heatmap": f"heatmaps/{level}.png",
                }
            )
            pictures[level] = {
                "image": _png(display),
                "heatmap": _png(overlay(display, heat)),
            }
        return discs, pictures

    # ------------------------------------------------------------------ output

    def write(
        self, result: dict[str, Any], pictures: dict[str, dict[str, bytes]], out: Path
    ) -> None:
        """prediction.json, prediction.csv, summary.html, images/ and heatmaps/ in `out`."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "images").mkdir(exist_ok=True)
        (out / "heatmaps").mkdir(exist_ok=True)
        for level, files in pictures.items():
            write_bytes_atomic(out / "images" / f"{level}.png", files["image"])
            write_bytes_atomic(out / "heatmaps" / f"{level}.png", files["heatmap"])
        public = {k: v for k, v in result.items() if not k.startswith("_")}
        write_json_atomic(out / PREDICTION_JSON, public)
        rows = [
            {
                "study": result["study"],
                "level": d["level"],
                "predicted": d["predicted"],
                **{f"p_{c}": d["probabilities"][c] for c in self.classes},
                "image": d["image"],
                "heatmap": d["heatmap"],
            }
            for d in result["discs"]
        ]
        columns = ["study", "level", "predicted", *[f"p_{c}" for c in self.classes]]
        write_csv_atomic(out / PREDICTION_CSV, rows, [*columns, "image", "heatmap"])
        write_text_atomic(out / SUMMARY_HTML, summary_html(public))


def predict(
    study: Path,
    model: Path,
    out: Path | None = None,
    *,
    roi: str | None = None,
    layer: str = "features",
    threads: int = 0,
) -> dict[str, Any]:
    """`lumbar predict`: load the run `model`, predict every disc of one study, and write the
    outputs to `out` when given (see `Predictor.predict_study`).

    Raises:
        UserError: a bad thread count, run folder, ROI or layer, or a study without usable
            axial images.
    """
    set_threads(threads)
    return Predictor.load(model, roi=roi, layer=layer).predict_study(study, out)


def _levels() -> list[str]:
    return [lv.value for lv in DiscLevel]


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def summary_html(result: dict[str, Any]) -> str:
    """The one-page summary: a table of per-disc predictions and each level's image + heat map.

    Image links are relative (images/, heatmaps/), so the folder can be moved or zipped.
    """
    esc = html.escape
    model = result["model"]
    classes = model["classes"]
    head = "".join(f"<th>P({esc(c)})</th>" for c in classes)
    body = []
    cards = []
    for d in result["discs"]:
        abnormal = d["predicted"] != classes[0]
        cells = "".join(f"<td>{d['probabilities'][c]:.3f}</td>" for c in classes)
        body.append(
            f"<tr class='{'abn' if abnormal else 'ok'}'><td>{esc(d['level'])}</td>"
            f"<td><b>{esc(d['predicted'])}</b></td>{cells}</tr>"
        )
        cards.append(
            f"<figure><figcaption>{esc(d['level'])}: <b>{esc(d['predicted'])}</b> "
            f"({d['probability']:.0%})</figcaption>"
            f"<img src='{esc(d['image'])}' alt='{esc(d['level'])} axial T2'>"
            f"<img src='{esc(d['heatmap'])}' alt='{esc(d['level'])} Grad-CAM'></figure>"
        )
    missing = result.get("missing_levels") or []
    note = (
        f"<p class='warn'>No axial image selected for: {esc(', '.join(missing))}.</p>"
        if missing
        else ""
    )
    if model.get("roi_source") == "unknown":
        note += (
            "<p class='warn'>The run does not record its crop; images were not cropped "
            "(give predict the crop).</p>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lumbar prediction {esc(result["study"])}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.meta {{ color: #555; margin: 0 0 12px; }}
table {{ border-collapse: collapse; margin-bottom: 12px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 10px; text-align: left; }}
tr.abn td {{ background: #fde8e8; }}
.grid {{ display: flex; flex-wrap: nowrap; gap: 8px; }}
figure {{ margin: 0; border: 1px solid #ddd; padding: 6px; background: #fafafa; }}
figure img {{ width: 160px; height: auto; display: block; margin-top: 4px; }}
figcaption {{ font-size: 13px; margin-bottom: 4px; }}
.warn {{ color: #a15c00; }}
.note {{ color: #666; font-size: 12px; margin-top: 10px; }}
</style></head><body>
<h1>Disc states for study {esc(result["study"])}</h1>
<p class="meta">Model: {esc(str(model["run"]))} ({esc(str(model["backbone"]))}, target
{esc(str(model["target"]))}, ROI {esc(str(model["roi"]))}) &middot; series found:
{esc(", ".join(result.get("series_found", [])))}</p>
{note}
<table><tr><th>level</th><th>prediction</th>{head}</tr>
{"".join(body)}</table>
<div class="grid">{"".join(cards)}</div>
<p class="note">Top: the selected axial T2 image (ROI crop); bottom: Grad-CAM of the predicted
class (red = most influential). A model suggestion, not a diagnosis.</p>
</body></html>
"""
