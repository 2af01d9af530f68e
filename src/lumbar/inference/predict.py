"""`lumbar predict`: one DICOM study -> per-disc states with probabilities and Grad-CAM maps.

The study goes through the same code as training data (DESIGN.md pipeline): `lumbar.ingest`
indexes it, classifies its series, selects the paper's axial frames per disc level (Eq. 1-2),
windows and de-identifies them, into a private temporary folder. Each axial image is cropped
with the run's ROI, prepared by the training loader's `load_image`, classified, and explained
with `lumbar.explain.GradCAM`. The result is written as `prediction.json`, `prediction.csv`,
one-page `summary.html`, and the five images with their heat maps. On request the same
prediction also becomes a DICOM SR, an overlay series and a FHIR report, sent back to the PACS
if asked (`lumbar.structured`); a study may also be given as a DICOMweb study URL.

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

import contextlib
import csv
import html
import io
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lumbar.data.roi import DiscROI, parse_roi
from lumbar.errors import UserError
from lumbar.explain import GradCAM, class_names, load_run, prepare_image
from lumbar.files import write_bytes_atomic, write_csv_atomic, write_json_atomic, write_text_atomic
from lumbar.grading import DiscLevel
from lumbar.ingest import IMAGES_COLUMNS, IngestOptions, NoUsableImages, ingest
from lumbar.ingest.classify import SeriesClass
from lumbar.ingest.discs import LocaliserSource
from lumbar.pseudonym import load_secret
from lumbar.structured.dicomweb import fetch_study, parse_study_url
from lumbar.structured.export import (
    StructuredOptions,
    algorithm_info,
    export_structured,
    prepare_outputs,
)
from lumbar.visualize.overlays import overlay

__all__ = ["Predictor", "predict", "run_roi", "set_threads", "study_folder"]

PREDICTION_JSON = "prediction.json"
PREDICTION_CSV = "prediction.csv"
SUMMARY_HTML = "summary.html"
AXIAL_VIEW = SeriesClass.AXIAL_T2.value
SAGITTAL_VIEW = SeriesClass.SAGITTAL_T2.value

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
    # disc centres for the ingest's axial selection: the learnt sagittal localiser, loaded on
    # the first study, so that any scanner's axial layout gives the mid-disc slices
    disc_centres: Any = field(default_factory=LocaliserSource, repr=False)

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
            roi=parse_roi(spec),
            roi_source=source,
            classes=class_names(config),
            layer=layer,
        )

    def probabilities(self, paths: Sequence[Path]) -> np.ndarray:
        """Class probabilities (N, classes) of axial disc images, each cropped to the run's ROI
        and prepared as in `predict_study` (one batch; one call at a time).

        Raises:
            UserError: the run crops around the disc (`disc:MM`), which needs each image's disc
                position; plain image paths do not carry it.
        """
        if isinstance(self.roi, DiscROI):
            raise UserError(
                f"a run with ROI {self.roi.spec} needs each image's disc position, which plain "
                "images do not carry; use `lumbar predict` on the study, or a run with grid, "
                "center:F or none"
            )
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
        self,
        study: Path,
        out: Path | None = None,
        *,
        work: Path | None = None,
        sources: bool = False,
    ) -> dict[str, Any]:
        """Predict every axial disc image of one study; write the outputs to `out` if given.

        Args:
            study: a folder of the study's DICOM files (any layout, as `lumbar ingest` reads).
            out: output folder (created; its files are replaced).
            work: folder for the intermediate ingest (default: a private temporary folder,
                removed afterwards).
            sources: also return, under "_sources", which source instances were used (hashes
                of their SOP Instance UIDs), each axial crop box and heat map, and the pseudonym
                secret the ingest used: what `lumbar.structured` needs for SR, SC and FHIR.

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
            axial, patient, found, used = self._ingest(Path(study), work_dir / "ingest")
            ingest_seconds = time.perf_counter() - start
            discs, pictures, maps = self._classify([(lv, path, row) for lv, path, _, row in axial])
            if sources:
                used["secret"] = load_secret(work_dir / "ingest")
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
        if sources:
            result["_sources"] = {
                **used,
                "axial": {lv: {**maps[lv], "uid_hash": h} for lv, _, h, _ in axial},
            }
        return result

    # ------------------------------------------------------------------ steps

    def _ingest(
        self, study: Path, work: Path
    ) -> tuple[list[tuple[str, Path, str, dict[str, str]]], str, list[str], dict[str, Any]]:
        """(level, image, source UID hash, images.csv row) of the selected axial frames, the
        pseudonym, the views found, and {"sagittal": UID hash of the selected sagittal frame or
        None}.

        The selection comes from the ingest's result in memory; its PNGs are in `work`.
        """
        if not study.is_dir():
            raise UserError(f"study {study.name} is not a folder of DICOM files")
        try:
            with _INGEST_LOCK:
                summary = ingest(
                    study, work, IngestOptions(workers=1, disc_centres=self.disc_centres)
                )
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
        axial = [
            (
                im.level,
                work / im.image,
                im.source_uid_hash,
                dict(zip(IMAGES_COLUMNS, im.as_tuple(), strict=True)),
            )
            for im in summary.selected
            if im.view == AXIAL_VIEW
        ]
        sagittal = [im.source_uid_hash for im in summary.selected if im.view == SAGITTAL_VIEW]
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
        return axial, patients[0], found, {"sagittal": sagittal[0] if sagittal else None}

    def _classify(
        self, axial: list[tuple[str, Path, dict[str, str]]]
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, bytes]], dict[str, dict[str, Any]]]:
        """Per-level class probabilities and Grad-CAM overlays, in one batch, and per level the
        crop box in the full image, the displayed crop's size (a disc ROI resamples its box)
        and the heat map (values 0-1, at the model's input size)."""
        crops = [self._crop(level, row) for level, _, row in axial]
        prepared = [
            prepare_image(path, crop, self.model.preprocessing)
            for (_, path, _), crop in zip(axial, crops, strict=True)
        ]
        batch = torch.cat([x for _, x in prepared])
        with self.lock:
            result = GradCAM(self.model, self.layer)(batch)
        discs: list[dict[str, Any]] = []
        pictures: dict[str, dict[str, bytes]] = {}
        maps: dict[str, dict[str, Any]] = {}
        for k, (level, path, _) in enumerate(axial):
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
            maps[level] = {
                "box": crops[k].box(*_image_size(path)),
                "display_size": (display.shape[1], display.shape[0]),
                "heatmap": heat,
            }
        return discs, pictures, maps

    def _crop(self, level: str, row: dict[str, str]) -> Any:
        """The run's ROI for one axial image (a disc ROI is placed on the image's disc).

        Raises:
            UserError: a disc ROI and an image whose disc position ingest did not find.
        """
        try:
            return self.roi.for_row(row)
        except ValueError:
            raise UserError(
                f"ROI {self.roi.spec}: the study's {level} image has no disc position (no disc "
                "centre was found for it on the sagittal T2 series)"
            ) from None

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
    study: str | Path,
    model: Path,
    out: Path | None = None,
    *,
    roi: str | None = None,
    layer: str = "features",
    threads: int = 0,
    structured: StructuredOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`lumbar predict`: load the run `model`, predict every disc of one study, and write the
    outputs to `out` when given (see `Predictor.predict_study`).

    `study` is a folder, or a DICOMweb study URL (`http://host/dicom-web/studies/UID`), fetched
    by WADO-RS into a temporary folder first. `structured` asks for a DICOM SR and overlay
    series, a FHIR report and/or STOW-RS to a PACS (`lumbar.structured`); what they did is
    returned under "structured".

    Raises:
        UserError: a bad thread count, run folder, ROI or layer, a study without usable
            axial images, an unreachable DICOMweb service or unknown study, a PACS refusal.
    """
    set_threads(threads)
    predictor = Predictor.load(model, roi=roi, layer=layer)
    wanted = structured if structured is not None and structured.wanted() else None
    if wanted is not None:
        prepare_outputs(wanted)
    with study_folder(study) as folder:
        result = predictor.predict_study(folder, out, sources=wanted is not None)
        if wanted is not None:
            info = algorithm_info(predictor.run_dir, predictor.config)
            done = export_structured(result, folder, info, predictor.classes, wanted, echo=echo)
            result["structured"] = done
            result.pop("_sources", None)
    return result


@contextlib.contextmanager
def study_folder(study: str | Path) -> Iterator[Path]:
    """The study as a folder: a folder as given, a DICOMweb study URL fetched into a private
    temporary folder (removed afterwards)."""
    parsed = parse_study_url(str(study))
    if parsed is None:
        yield Path(study)
        return
    with tempfile.TemporaryDirectory(prefix="lumbar-study-") as tmp:
        fetch_study(*parsed, Path(tmp) / "study")
        yield Path(tmp) / "study"


def _levels() -> list[str]:
    return [lv.value for lv in DiscLevel]


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


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
