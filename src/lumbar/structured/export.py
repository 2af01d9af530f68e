"""`lumbar predict --dicom-sr/--fhir/--stow`: a study's prediction made into a StudyPrediction
(source instances, disc points, findings) and written as SR, overlay series and FHIR JSON, then
sent to the PACS.

Everything is built and checked in memory first (every object must name its source study);
only then are files written (atomically) and objects sent, so a refusal leaves the files and
says what the PACS stored.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar import __version__, runs
from lumbar.errors import UserError
from lumbar.files import write_bytes_atomic, write_text_atomic
from lumbar.ingest.export import frame_pixels, windowed
from lumbar.ingest.index import uid_hash
from lumbar.ingest.read import iter_files
from lumbar.structured.fhir import fhir_json
from lumbar.structured.identity import (
    Identity,
    apply_identity,
    check_same_study,
    source_image,
    study_identity,
)
from lumbar.structured.model import (
    AlgorithmInfo,
    DiscPrediction,
    FindingResult,
    NoDiscFound,
    StudyPrediction,
)
from lumbar.structured.overlay import build_overlay
from lumbar.structured.sr import build_sr
from lumbar.structured.stow import StowReport, stow

__all__ = [
    "MODEL_CARD",
    "StructuredOptions",
    "StructuredResult",
    "algorithm_info",
    "build_prediction",
    "export_structured",
    "prepare_outputs",
]

MODEL_CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class StructuredOptions:
    """Which structured outputs to make, and whose identifiers they carry."""

    dicom_sr: Path | None = None  # folder: SR and overlay series as DICOM files
    fhir: Path | None = None  # file: FHIR DiagnosticReport JSON
    stow: str | None = None  # DICOMweb root to send the SR and overlay series to
    identity: Identity = Identity.RESEARCH

    def wanted(self) -> bool:
        """True when any structured output is asked for."""
        return bool(self.dicom_sr or self.fhir or self.stow)


@dataclass
class StructuredResult:
    """What was written and sent."""

    files: list[Path] = field(default_factory=list)
    stow: StowReport | None = None


def algorithm_info(run_dir: Path, config: Mapping[str, Any]) -> AlgorithmInfo:
    """The run's identification: name from backbone and target, lumbar's version, and the
    SHA-256 of the run's model card (MODEL_CARD.md) or, lacking one, of its config and
    checkpoint (what defines the model's behaviour)."""
    run_dir = Path(run_dir)
    digest = hashlib.sha256()
    card = run_dir / MODEL_CARD
    files = [card] if card.is_file() else [run_dir / runs.CONFIG, run_dir / runs.CHECKPOINT]
    for path in files:
        if path.is_file():
            with path.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    name = f"lumbar {config.get('backbone', 'model')} {config.get('target', '')}".strip()
    return AlgorithmInfo(name=name, version=__version__, model_card_sha256=digest.hexdigest())


@dataclass
class _Sources:
    """The source files a prediction used: header (pixels dropped) and display pixels."""

    headers: dict[str, Any]  # uid hash -> header
    pixels: dict[str, np.ndarray]  # uid hash -> display uint8


def _read_sources(study: Path, wanted: set[str]) -> _Sources:
    """Find the instances whose SOP Instance UID hashes are `wanted` (headers first, pixels
    only for those) and decode their display pixels as ingest does."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers: dict[str, Any] = {}
    pixels: dict[str, np.ndarray] = {}
    for path in iter_files(study):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):  # not DICOM: ingest skipped it too
            continue
        key = uid_hash(str(header.get("SOPInstanceUID", "")))
        if key not in wanted or key in headers:
            continue
        display = windowed(header, frame_pixels(pydicom.dcmread(path), 0))
        pixels[key] = display if display.ndim == 3 else np.round(display * 255).astype(np.uint8)
        headers[key] = header
    missing = wanted - set(headers)
    if missing:
        raise UserError(f"{len(missing)} source image(s) of the prediction were not found again")
    return _Sources(headers, pixels)


def build_prediction(
    result: Mapping[str, Any],
    study: Path,
    algorithm: AlgorithmInfo,
    classes: list[str],
    mode: Identity,
) -> tuple[StudyPrediction, list[Any], dict[str, np.ndarray]]:
    """The StudyPrediction of a `Predictor.predict_study(..., sources=True)` result.

    Each disc's point on the sagittal image is where the centre of the region the model graded
    (the axial image's crop) projects onto the sagittal plane (both images' patient geometry);
    its point on the axial image is the heat map's peak. Without a sagittal image (or geometry)
    the disc is reported at that peak on its axial image.

    Returns:
        (prediction, source headers in the chosen identity (the SR's evidence),
        {SOP Instance UID in that identity: display pixels}).

    Raises:
        NoDiscFound: the result holds no disc.
    """
    used = result["_sources"]
    if not result["discs"]:
        raise NoDiscFound("the study yielded no disc; no structured report was made")
    wanted = {v["uid_hash"] for v in used["axial"].values()}
    if used.get("sagittal"):
        wanted.add(used["sagittal"])
    sources = _read_sources(Path(study), wanted)
    keys = list(sources.headers)
    named = dict(
        zip(keys, apply_identity(sources.headers.values(), mode, used["secret"]), strict=True)
    )
    images = {key: source_image(ds) for key, ds in named.items()}
    sagittal = images.get(used.get("sagittal") or "")
    discs = []
    for disc in result["discs"]:
        level = disc["level"]
        info = used["axial"][level]
        axial = images[info["uid_hash"]]
        left, top, right, bottom = info["box"]
        peak = disc["heatmap_peak"]
        # the displayed crop may be resampled from its box (a disc ROI): scale back to pixels
        shown_w, shown_h = info.get("display_size") or (right - left, bottom - top)
        sx, sy = (right - left) / shown_w, (bottom - top) / shown_h
        axial_point = (left + peak["x"] * sx - 0.5, top + peak["y"] * sy - 0.5)
        centre = ((left + right - 1) / 2, (top + bottom - 1) / 2)
        image, point = axial, axial_point
        if sagittal is not None:
            try:
                point = sagittal.from_patient(axial.to_patient(*centre))
                image = sagittal
            except ValueError:
                pass
        findings = (
            FindingResult(
                name=str(result["model"]["target"]),
                value=disc["predicted"],
                probability=disc["probability"],
                grade=classes.index(disc["predicted"]),
            ),
        )
        discs.append(
            DiscPrediction(
                level=level,
                image=image,
                point=point,
                findings=findings,
                axial=axial,
                axial_point=axial_point,
                heatmap=_full_heatmap(info["heatmap"], info["box"], (axial.rows, axial.columns)),
            )
        )
    first = named[used["sagittal"]] if used.get("sagittal") else named[keys[0]]
    prediction = StudyPrediction(
        identity=study_identity(first), algorithm=algorithm, discs=tuple(discs), mode=mode.value
    )
    pixels = {images[key].sop_instance_uid: sources.pixels[key] for key in keys}
    return prediction, list(named.values()), pixels


def _full_heatmap(
    heat: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]
) -> np.ndarray:
    """The heat map (model input size) resized onto its crop box of a full image of `shape`;
    NaN outside the box (the model did not see it)."""
    from PIL import Image

    left, top, right, bottom = box
    full = np.full(shape, np.nan, dtype=np.float32)
    resized = np.asarray(
        Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F").resize(
            (right - left, bottom - top), Image.Resampling.BILINEAR
        )
    )
    # a disc ROI's box may reach past the image: keep the part inside it
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(bottom, shape[0]), min(right, shape[1])
    if y1 > y0 and x1 > x0:
        full[y0:y1, x0:x1] = resized[y0 - top : y1 - top, x0 - left : x1 - left]
    return full


def prepare_outputs(options: StructuredOptions) -> None:
    """Create the SR folder and the FHIR file's folder now, before a study is fetched or
    graded, so an unusable path fails in a second rather than after the model ran.

    Raises:
        UserError: a folder cannot be created, or the FHIR path is a folder.
    """
    folders = [("dicom_sr", options.dicom_sr)]
    if options.fhir is not None:
        if Path(options.fhir).is_dir():
            raise UserError(f"{options.fhir} is a folder; give a file name", option="fhir")
        folders.append(("fhir", Path(options.fhir).parent))
    for option, folder in folders:
        if folder is None:
            continue
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"cannot create folder {folder}: {err.strerror}", option=option
            ) from None


def _dicom_bytes(ds: Any) -> bytes:
    import pydicom

    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def export_structured(
    result: Mapping[str, Any],
    study: Path,
    algorithm: AlgorithmInfo,
    classes: list[str],
    options: StructuredOptions,
    echo: Callable[[str], None] | None = None,
) -> StructuredResult:
    """Write and send the structured outputs of one study's prediction (see the module).

    Raises:
        NoDiscFound: no disc to report.
        UserError: an output object not matching its source study, an unusable output path,
            or a PACS that cannot be reached, lacks the study or refuses the objects.
    """
    prepare_outputs(options)
    prediction, evidence, pixels = build_prediction(
        result, study, algorithm, classes, options.identity
    )
    sr = build_sr(prediction, evidence)
    pictures = build_overlay(prediction, pixels)
    objects = [("SR", sr)] + [(f"overlay {k}", sc) for k, sc in enumerate(pictures, start=1)]
    for _, ds in objects:
        check_same_study(ds, prediction.identity)
    done = StructuredResult()
    folder_name = str(result["study"])  # the research pseudonym: no identifier in file names
    if options.dicom_sr is not None:
        folder = Path(options.dicom_sr) / folder_name
        folder.mkdir(exist_ok=True)
        names = ["SR.dcm"] + [f"overlay-{k:02d}.dcm" for k in range(1, len(pictures) + 1)]
        for name, (_, ds) in zip(names, objects, strict=True):
            write_bytes_atomic(folder / name, _dicom_bytes(ds))
            done.files.append(folder / name)
    if options.fhir is not None:
        target = Path(options.fhir)
        write_text_atomic(target, fhir_json(prediction))
        done.files.append(target)
    if options.stow is not None:
        done.stow = stow(options.stow, prediction.identity.study_instance_uid, objects)
        if echo is not None:
            echo(done.stow.summary())
    return done
