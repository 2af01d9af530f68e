"""`lumbar predict INPUT... --out DIR`: sagittal images, DICOM studies and DICOMweb studies in
one call, the models loaded once and the slices of all inputs localised in one batch.

For each input that succeeds, DIR/<name>/ holds prediction.json, overlay.png (the sagittal
slice with each disc's box, level and P(abnormal)) and gradcam/<level>.png; DIR/predictions.csv
has one row per disc and DIR/summary.html shows everything on one page. An input that fails (not
an image, no spine found, no sagittal series, unreachable URL) gets one line, its row in
DIR/inputs.csv, and a place in the summary; the others go on.

Per-input names are safe and pseudonymous (`lumbar.inference.inputs`). With an axial run
(`--model RUN` of `lumbar train` on axial images) a study's axial images are graded too (see
`lumbar.inference.predict.Predictor`), and each disc reports both views.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar import runs
from lumbar.data.imageio import RASTER_SUFFIXES, read_native
from lumbar.errors import UserError
from lumbar.files import write_bytes_atomic, write_csv_atomic, write_json_atomic, write_text_atomic
from lumbar.grader.model import BUNDLED_MODEL, load_grader
from lumbar.grading import PFIRRMANN_GRADES, SPINE_LEVELS
from lumbar.inference.inputs import (
    InputKind,
    PredictInput,
    SagittalImage,
    UniqueNames,
    classify_input,
    read_sagittal_image,
    safe_stem,
)
from lumbar.inference.predict import Predictor, study_folder
from lumbar.inference.sagittal import (
    DiscFinder,
    DiscGrader,
    DiscResult,
    SagittalPrediction,
    grade_slices,
)
from lumbar.inference.summary import summary_page
from lumbar.ingest.pacs import is_dicomweb_url, redact_url
from lumbar.ingest.read import iter_files, patient_pseudonym
from lumbar.localize import load_localizer
from lumbar.localize.localizer import WEIGHTS_FILE as LOCALIZER_WEIGHTS
from lumbar.localize.study import central_slices, fuse, read_plane, sagittal_t2_files, to_patient
from lumbar.pseudonym import load_secret
from lumbar.structured.export import (
    StructuredOptions,
    algorithm_info,
    build_sagittal_prediction,
    export_structured,
    prepare_outputs,
    sagittal_algorithm,
    write_structured,
)
from lumbar.visualize.overlays import overlay
from lumbar.visualize.predictions import draw_graded_discs, gray_uint8

__all__ = [
    "BINARY_TARGETS",
    "BatchOutcome",
    "InputOutcome",
    "PredictModels",
    "load_predict_models",
    "predict_inputs",
]

PREDICTIONS_CSV = "predictions.csv"
INPUTS_CSV = "inputs.csv"
SUMMARY_HTML = "summary.html"
PREDICTION_JSON = "prediction.json"
OVERLAY_PNG = "overlay.png"
#: The grader's binary targets after `disc_abnormal`, in CSV column order.
BINARY_TARGETS = ("bulging", "herniation", "narrowing")
PFIRRMANN = tuple(str(grade) for grade in PFIRRMANN_GRADES)
#: Inputs read, localised and graded together (one localiser and one grader batch each): many
#: inputs in one call never hold more than this many inputs' pixels at once.
CHUNK = 64


@dataclass
class PredictModels:
    """The models of one `lumbar predict` call, loaded once.

    Attributes:
        finder: the disc localiser (None: no sagittal grading).
        grader: the sagittal grader.
        axial: a `lumbar train` run's model for a study's axial images, if given.
        info: what the outputs say about the models (names, versions, cards; no paths).
        cards: model-card facts for the summary page (intended use, data, credit).
    """

    finder: DiscFinder | None
    grader: DiscGrader | None
    axial: Predictor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    cards: list[dict[str, str]] = field(default_factory=list)


def load_predict_models(
    model: Path | None = None, *, roi: str | None = None, layer: str = "features"
) -> PredictModels:
    """The models of `lumbar predict`: the bundled localiser and grader, and `model` when given.

    `model` is a `lumbar train` run on axial images (graded beside the bundled sagittal
    models), a `lumbar localize train` run (replaces the bundled localiser) or a grader run
    (replaces the bundled grader).

    Raises:
        UserError: `model` is none of these, or cannot be loaded.
    """
    localizer_run = grader_run = None
    axial = None
    if model is not None:
        model = Path(model)
        if (model / runs.CONFIG).is_file():
            axial = Predictor.load(model, roi=roi, layer=layer)
        elif (model / LOCALIZER_WEIGHTS).is_file() or model.name == LOCALIZER_WEIGHTS:
            localizer_run = model
        elif _is_grader_run(model):
            grader_run = model
        else:
            raise UserError(
                f"{model.name} is not a run folder of `lumbar train` (axial), a disc localiser "
                "or a sagittal grader",
                option="model",
            )
    finder, grader = load_sagittal(localizer_run, grader_run)
    info: dict[str, Any] = {
        "localizer": _model_name(localizer_run, "bundled disc localiser"),
        "grader": _model_name(grader_run, "bundled sagittal grader"),
    }
    if axial is not None:
        info["axial"] = axial.model_info()
    cards = [card for card in (_card("lumbar.localize"), _card("lumbar.grader")) if card]
    return PredictModels(finder, grader, axial, info, cards)


def load_sagittal(
    localizer_run: Path | None = None, grader_run: Path | None = None
) -> tuple[DiscFinder, DiscGrader]:
    """The disc localiser and the sagittal grader: bundled, or from the runs given."""
    return load_localizer(localizer_run), load_grader(grader_run)


def _is_grader_run(model: Path) -> bool:
    return (model / BUNDLED_MODEL.name).is_file() or model.name == BUNDLED_MODEL.name


def _model_name(run: Path | None, bundled: str) -> str:
    return bundled if run is None else f"run {Path(run).resolve().name}"


def _card(package: str) -> dict[str, str]:
    """Name, summary, data and intended use from a bundled model's MODEL_CARD.md (sections
    headed `## ...`), for the summary page; empty when the package ships no card."""
    from importlib import resources

    try:
        text = (resources.files(package) / "weights" / "MODEL_CARD.md").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError):
        return {}
    sections: dict[str, list[str]] = {}
    title = ""
    current = "summary"
    for line in text.splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            current = line[3:].strip().lower()
        elif line.strip():
            sections.setdefault(current, []).append(line.strip().removeprefix("- "))

    def section(*words: str, limit: int = 500) -> str:
        for name, lines in sections.items():
            if any(w in name for w in words):
                return _shorten(" ".join(lines), limit)
        return ""

    return {
        "name": title or package,
        "summary": section("summary", "what it does", limit=300),
        "data": section("data", limit=300),
        "intended_use": section("intended", limit=600),
    }


def _shorten(text: str, limit: int) -> str:
    """`text` cut after the last full sentence within `limit` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    return (cut[: end + 1] if end > 0 else cut.rstrip()) + " (more in the model card)"


@dataclass
class InputOutcome:
    """One input's result: `error` set when it failed, else its name and prediction."""

    given: str
    kind: str
    name: str = ""
    error: str = ""
    prediction: dict[str, Any] = field(default_factory=dict)
    overlay: bytes = b""
    gradcams: dict[str, bytes] = field(default_factory=dict)


@dataclass
class BatchOutcome:
    """What a `predict_inputs` call did."""

    inputs: list[InputOutcome]
    seconds: float

    @property
    def failed(self) -> int:
        return sum(1 for i in self.inputs if i.error)

    @property
    def discs(self) -> int:
        return sum(len(i.prediction.get("discs", [])) for i in self.inputs)


@dataclass
class _Pending:
    """An input on its way: resolved, read, waiting for the batch."""

    given: str
    source: PredictInput | None
    group: list[SagittalImage] = field(default_factory=list)
    name: str = ""
    sagittal_error: str = ""
    folder: Path | None = None
    central: Path | None = None
    axial: dict[str, Any] | None = None
    axial_error: str = ""
    outcome: InputOutcome | None = None
    pseudonymous: bool = False  # outputs call it by its name, not by its path or URL


def predict_inputs(
    inputs: Sequence[str],
    out: Path | None,
    models: PredictModels,
    *,
    gradcam: bool = True,
    echo: Callable[[str], None] = print,
    fail: Callable[[str], None] | None = None,
    labels: Sequence[str] | None = None,
    structured: StructuredOptions | None = None,
) -> BatchOutcome:
    """Predict every input into `out` (see the module docstring); one line per failed input.

    Args:
        out: the output folder (None: research outputs are not written, e.g. when only a
            DICOM SR is sent back to the PACS).
        echo, fail: where progress lines and the failed inputs' lines go (fail: echo).
        labels: what outputs call each input (the `input` column); default: a PNG/JPEG
            path as given (the user's own file name), a DICOM study, DICOM file or URL by its
            output name (the keyed pseudonym of its patient) - its path or URL may name the
            patient - or, failing before that is known, `input N` (a URL: without its UID).
        structured: DICOM SR, overlay series, FHIR and STOW-RS per study
            (`lumbar.structured`); a study whose structured outputs fail counts as failed.

    Raises:
        UserError: no inputs, or `out` cannot be written.
    """
    if not inputs:
        raise UserError("give at least one input: an image, a study folder or a study URL")
    start = time.perf_counter()
    fail = fail or echo
    secret = _secret(out)
    if labels is not None and len(labels) != len(inputs):
        raise ValueError("one label per input")
    shown = labels or [_label(given, n) for n, given in enumerate(inputs, 1)]
    pending = [_pending(g, lb) for g, lb in zip(inputs, shown, strict=True)]
    for item in pending:
        item.pseudonymous = labels is None and not _is_raster(item.given)
    wanted = structured is not None and structured.wanted()
    if wanted:
        assert structured is not None
        prepare_outputs(structured)
    name = UniqueNames()
    for first in range(0, len(pending), CHUNK):
        chunk = pending[first : first + CHUNK]
        with contextlib.ExitStack() as stack:  # fetched studies live until the chunk is done
            for item in chunk:
                if item.outcome is None:
                    _prepare(item, models, secret, stack, sources=wanted)
            _grade(chunk, models, gradcam)
            for item in chunk:
                item.group = []  # the slices' pixels are not needed any more
                if item.outcome is not None and not item.outcome.error:
                    item.outcome.name = name(item.outcome.name or "input")
                    item.outcome.prediction["name"] = item.outcome.name
                    if item.pseudonymous:
                        item.outcome.given = item.outcome.name
                        item.outcome.prediction["input"] = item.outcome.name
                    if wanted:
                        assert structured is not None
                        _export(item, models, structured, secret, echo)
        for item in chunk:
            assert item.outcome is not None
            if item.outcome.error:
                fail(f"{item.outcome.given}: {item.outcome.error}")
            elif out is not None:
                _write_input(Path(out) / item.outcome.name, item.outcome)
    outcomes = [item.outcome for item in pending if item.outcome is not None]
    batch = BatchOutcome(outcomes, time.perf_counter() - start)
    if out is not None:
        _write_tables(Path(out), batch)
        write_text_atomic(Path(out) / SUMMARY_HTML, summary_page(batch, models))
    return batch


def _label(given: str, number: int) -> str:
    """What outputs call an input until its name is known: a PNG/JPEG path as given, a URL
    without its study UID, anything else (a DICOM path may name the patient) `input N`."""
    if is_dicomweb_url(given):
        return redact_url(given)
    return given if _is_raster(given) else f"input {number}"


def _is_raster(given: str) -> bool:
    """True for a PNG/JPEG path: the user's own file name, shown as given."""
    return not is_dicomweb_url(given) and Path(given).suffix.lower() in RASTER_SUFFIXES


def _secret(out: Path | None) -> bytes:
    """The pseudonym secret: $LUMBAR_PSEUDONYM_SECRET, else out/.lumbar-secret (made on first
    use, as `lumbar ingest` does); without `out`, a secret for this run alone."""
    if out is None:
        try:
            return load_secret(None)
        except UserError:
            return secrets.token_hex(32).encode("ascii")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create folder {out}: {err.strerror}", option="out") from None
    return load_secret(Path(out), create=True)


def _export(
    item: _Pending,
    models: PredictModels,
    options: StructuredOptions,
    secret: bytes,
    echo: Callable[[str], None],
) -> None:
    """The structured outputs of one study (SR, overlay series, FHIR, STOW-RS): from the
    sagittal discs, with the axial run's findings beside them where there is one."""
    outcome = item.outcome
    if outcome is None or outcome.error or item.folder is None:
        return
    try:
        if item.axial is not None and not outcome.prediction.get("image"):
            info = algorithm_info(models.axial.run_dir, models.axial.config)  # type: ignore[union-attr]
            export_structured(
                item.axial,
                item.folder,
                info,
                models.axial.classes,
                options,
                echo,  # type: ignore[union-attr]
            )
            return
        assert item.central is not None
        axial = None
        if item.axial is not None:
            assert models.axial is not None
            axial = (
                item.axial,
                algorithm_info(models.axial.run_dir, models.axial.config),
                models.axial.classes,
            )
        built = build_sagittal_prediction(
            outcome.prediction["discs"], item.central, item.folder, sagittal_algorithm(),
            options.identity, secret, axial=axial,
        )  # fmt: skip
        write_structured(*built, options, outcome.name, echo)
    except UserError as err:
        outcome.error = str(err)


# ------------------------------------------------------------------ steps


def _pending(given: str, label: str) -> _Pending:
    try:
        return _Pending(label, classify_input(given))
    except UserError as err:
        return _Pending(label, None, outcome=InputOutcome(label, "unknown", error=str(err)))


def _prepare(
    item: _Pending,
    models: PredictModels,
    secret: bytes,
    stack: contextlib.ExitStack,
    *,
    sources: bool = False,
) -> None:
    """Read what the input holds for the models: its sagittal slice(s), its axial grading."""
    source = item.source
    assert source is not None
    try:
        if source.kind is InputKind.IMAGE:
            assert source.path is not None
            item.group = [read_sagittal_image(source.path)]
            if source.path.suffix.lower() in RASTER_SUFFIXES:
                item.name = safe_stem(source.path.stem)
            else:  # a DICOM file is often named by its SOP UID or the patient's name
                item.name = _study_name([source.path], secret)
            _name_known(item)
            return
        folder = stack.enter_context(study_folder(source.path or source.given))
        item.folder = folder
        item.name = _study_name(iter_files(folder), secret)
        _name_known(item)
    except UserError as err:
        item.outcome = InputOutcome(item.given, source.kind.value, error=str(err))
        return
    try:
        item.group, item.central = _study_slices(folder)
    except UserError as err:
        item.sagittal_error = str(err)
    if models.axial is not None:
        try:
            item.axial = models.axial.predict_study(folder, None, sources=sources)
        except UserError as err:
            item.axial_error = str(err)
    if not item.group and item.axial is None:
        why = "; ".join(e for e in (item.sagittal_error, item.axial_error) if e)
        item.outcome = InputOutcome(item.given, source.kind.value, error=why)


def _name_known(item: _Pending) -> None:
    """A pseudonymous input is called by its name from now on (also when it fails later)."""
    if item.pseudonymous:
        item.given = item.name


def _study_name(paths: Iterable[Path], secret: bytes) -> str:
    """The keyed pseudonym of the patient of `paths` (`ingest.read.patient_pseudonym`).

    Raises:
        UserError: no readable DICOM file.
    """
    name = patient_pseudonym(paths, secret)
    if name is None:
        raise UserError("the folder holds no readable DICOM image")
    return name


def _study_slices(folder: Path) -> tuple[list[SagittalImage], Path]:
    """The central sagittal T2 slices of a study (the central one first), read, and the
    central one's file.

    Raises:
        UserError: no sagittal T2 series, or its images lack geometry or cannot be read.
    """
    try:
        central = central_slices(sagittal_t2_files(folder))
    except UserError as err:  # its message starts with the folder's name, which may name a person
        raise UserError(str(err).removeprefix(f"{folder.name}: ")) from None
    images = []
    for path in central:
        plane = read_plane(path)
        try:
            pixels = read_native(path)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read a sagittal T2 image ({err})") from None
        images.append(SagittalImage(pixels, (plane.row_spacing, plane.col_spacing), plane))
    return images, central[0]


def _combine(per_slice: list[list[Any]], group: Sequence[SagittalImage]) -> list[Any]:
    """One input's discs: patient coordinates where the slices have geometry, a study's slices
    fused per level on its central slice."""
    if any(image.plane is None for image in group):
        return per_slice[0]
    placed = [to_patient(d, image.plane) for d, image in zip(per_slice, group, strict=True)]
    if len(group) == 1:
        return placed[0]
    return fuse(placed, group[0].plane)


def _grade(pending: list[_Pending], models: PredictModels, gradcam: bool) -> None:
    """Grade the sagittal slices of every waiting input in one batch and set the outcomes."""
    waiting = [item for item in pending if item.outcome is None]
    sagittal = [item for item in waiting if item.group]
    if sagittal and (models.finder is None or models.grader is None):
        for item in sagittal:
            item.sagittal_error = "no sagittal model loaded"
            item.group = []
        sagittal = []
    results: list[SagittalPrediction | UserError] = []
    if sagittal:
        assert models.finder is not None and models.grader is not None
        results = grade_slices(
            models.finder,
            models.grader,
            [item.group for item in sagittal],
            gradcam=gradcam,
            combine=_combine,
        )
    by_item = {id(item): result for item, result in zip(sagittal, results, strict=True)}
    for item in waiting:
        assert item.source is not None
        result = by_item.get(id(item))
        if isinstance(result, UserError):
            item.sagittal_error = str(result)
            result = None
        kind = item.source.kind.value
        if result is None and item.axial is None:
            item.outcome = InputOutcome(item.given, kind, error=item.sagittal_error)
            continue
        item.outcome = _outcome(item, result, models, gradcam)


def _disc_json(d: DiscResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "level": d.level,
        "x": round(d.x, 2),
        "y": round(d.y, 2),
        "confidence": round(d.confidence, 4),
        "box": [[round(x, 1), round(y, 1)] for x, y in d.box],
        "p_abnormal": round(d.p_abnormal, 5),
        "probabilities": {k: round(v, 5) for k, v in d.probabilities.items()},
    }
    for target, dist in d.distributions.items():
        entry[target] = {c: round(p, 5) for c, p in dist.items()}
    if d.position_mm is not None:
        entry["position_mm"] = [round(v, 2) for v in d.position_mm]
    if d.heatmap is not None:
        entry["gradcam"] = f"gradcam/{d.level}.png"
    return entry


def _outcome(
    item: _Pending,
    sagittal: SagittalPrediction | None,
    models: PredictModels,
    gradcam: bool,
) -> InputOutcome:
    """The prediction of one input: its sagittal discs, with the axial grading per level."""
    assert item.source is not None
    prediction: dict[str, Any] = {
        "input": item.given,
        "kind": item.source.kind.value,
        "models": models.info,
        "discs": [],
    }
    outcome = InputOutcome(item.given, item.source.kind.value, name=item.name)
    if sagittal is not None:
        height, width = sagittal.image.shape[:2]
        prediction["image"] = {
            "width": int(width),
            "height": int(height),
            "spacing_mm": list(sagittal.spacing) if sagittal.spacing else None,
            "slices": sagittal.slices,
        }
        prediction["discs"] = [_disc_json(d) for d in sagittal.discs]
        prediction["unnamed_discs"] = sagittal.unnamed
        prediction["overlay"] = OVERLAY_PNG
        title = "central sagittal T2" if item.source.kind is not InputKind.IMAGE else ""
        outcome.overlay = draw_graded_discs(gray_uint8(sagittal.image), sagittal.discs, title)
        if gradcam:
            for d in sagittal.discs:
                if d.heatmap is not None and d.crop is not None:
                    outcome.gradcams[d.level] = _png(overlay(gray_uint8(d.crop), d.heatmap))
    elif item.sagittal_error:
        prediction["sagittal_error"] = item.sagittal_error
    if item.axial is not None:
        _attach_axial(prediction, item.axial, outcome)
    elif item.axial_error:
        prediction["axial_error"] = item.axial_error
    outcome.prediction = prediction
    return outcome


def _attach_axial(prediction: dict[str, Any], axial: dict[str, Any], outcome: InputOutcome) -> None:
    """Each disc's axial grading beside its sagittal one (by level); axial-only levels added."""
    pictures = axial.pop("_images", {})
    by_level = {d["level"]: d for d in prediction["discs"]}
    for disc in axial["discs"]:
        level = disc["level"]
        view = {
            "predicted": disc["predicted"],
            "probability": disc["probability"],
            "probabilities": disc["probabilities"],
            "image": f"axial/{level}.png",
            "heatmap": f"axial/{level}-gradcam.png",
        }
        if level in by_level:
            by_level[level]["axial"] = view
        else:
            entry = {"level": level, "x": None, "y": None, "axial": view}
            prediction["discs"].append(entry)
            by_level[level] = entry
        if level in pictures:
            outcome.gradcams[f"axial/{level}"] = pictures[level]["image"]
            outcome.gradcams[f"axial/{level}-gradcam"] = pictures[level]["heatmap"]
    prediction["discs"].sort(key=lambda d: SPINE_LEVELS.index(d["level"]))
    prediction["axial"] = {
        "model": axial["model"],
        "series_found": axial["series_found"],
        "missing_levels": axial["missing_levels"],
    }


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ------------------------------------------------------------------ output


def _write_input(folder: Path, outcome: InputOutcome) -> None:
    """prediction.json, overlay.png and the Grad-CAM pictures of one input."""
    folder.mkdir(parents=True, exist_ok=True)
    if outcome.overlay:
        write_bytes_atomic(folder / OVERLAY_PNG, outcome.overlay)
    for key, data in outcome.gradcams.items():
        target = folder / (key + ".png" if "/" in key else f"gradcam/{key}.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
    write_json_atomic(folder / PREDICTION_JSON, outcome.prediction)


def csv_rows(batch: BatchOutcome) -> tuple[list[dict[str, Any]], list[str]]:
    """predictions.csv: one row per disc of every input, and its columns."""
    axial_classes: list[str] = []
    rows: list[dict[str, Any]] = []
    for outcome in batch.inputs:
        for d in outcome.prediction.get("discs", []):
            row: dict[str, Any] = {
                "input": outcome.given,
                "name": outcome.name,
                "level": d["level"],
                "x": d.get("x"),
                "y": d.get("y"),
                "confidence": d.get("confidence"),
                "p_abnormal": d.get("p_abnormal"),
            }
            probabilities = d.get("probabilities", {})
            for target in BINARY_TARGETS:
                row[f"p_{target}"] = probabilities.get(target)
            grades = d.get("pfirrmann")
            if grades:
                row["pfirrmann"] = max(grades, key=grades.get)
                for grade in PFIRRMANN:
                    row[f"p_pfirrmann_{grade}"] = grades.get(grade)
            axial = d.get("axial")
            if axial:
                row["axial_predicted"] = axial["predicted"]
                for c, p in axial["probabilities"].items():
                    row[f"axial_p_{c}"] = p
                    if c not in axial_classes:
                        axial_classes.append(c)
            rows.append(row)
    columns = [
        "input",
        "name",
        "level",
        "x",
        "y",
        "confidence",
        "p_abnormal",
        *[f"p_{t}" for t in BINARY_TARGETS],
        "pfirrmann",
        *[f"p_pfirrmann_{g}" for g in PFIRRMANN],
    ]
    if axial_classes:
        columns += ["axial_predicted", *[f"axial_p_{c}" for c in axial_classes]]
    return rows, columns


def _write_tables(out: Path, batch: BatchOutcome) -> None:
    rows, columns = csv_rows(batch)
    write_csv_atomic(out / PREDICTIONS_CSV, rows, columns)
    write_csv_atomic(
        out / INPUTS_CSV,
        [
            {
                "input": o.given,
                "kind": o.kind,
                "status": f"failed: {o.error}" if o.error else "ok",
                "name": o.name if not o.error else "",
                "discs": len(o.prediction.get("discs", [])),
            }
            for o in batch.inputs
        ],
        ["input", "kind", "status", "name", "discs"],
    )
