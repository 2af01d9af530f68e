"""Phantom lumbar MRI studies for the demo and the tests: `synthesize_cohort` writes a cohort.

The output looks like a PACS export of the paper's hospital (one folder per patient, DICOM
series T2 SAG, T2 AX, MYELO, SURVEY, T1 SAG) with ground truth in `labels.csv` (the paper's
Table 3 grades per disc level, keyed by the original PatientID as a hospital sheet would be)
and `lesions.csv` (where each herniation or bulge lies on the axial images).
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lumbar.errors import UserError
from lumbar.files import staged_dir, write_text_atomic
from lumbar.grading import LEVELS, SPINE_LEVELS, GradeField
from lumbar.synth.protocols import Protocol, nearest_plane, patient_protocol

if TYPE_CHECKING:
    from lumbar.synth.series import Frame, Series, StudyBuilder

DISCS_CSV = "discs.csv"
LEVEL_NAMES = frozenset(level.value for level in LEVELS)

LABEL_COLUMNS = ("patient_id", "level", *(f.value for f in GradeField))
LESION_COLUMNS = ("patient_id", "level", "series", "instance", "x0", "y0", "x1", "y1")
DISC_COLUMNS = (
    "patient_id",
    "study_uid",
    "protocol",
    "level",
    "x_mm",
    "y_mm",
    "z_mm",
    "sagittal_visible",
    "axial_series",
    "axial_instance",
    "axial_sop_uid",
)


@dataclass(frozen=True)
class CohortSummary:
    """What `synthesize_cohort` wrote."""

    patients: int
    files: int
    seconds: float


@dataclass(frozen=True)
class _PatientResult:
    index: int
    files: int
    labels: list[dict[str, object]]
    lesions: list[dict[str, object]]
    discs: list[dict[str, object]]


def patient_folder_name(index: int) -> str:
    """Folder of the `index`-th patient; carries no identifier, only a running number."""
    return f"patient-{index + 1:04d}"


def _synthesize_patient(args: tuple[Path, int, int, Protocol]) -> _PatientResult:
    from lumbar.synth.cohort import make_patient
    from lumbar.synth.dicom_out import study_dataset, write_series
    from lumbar.synth.series import StudyBuilder

    staging, seed, index, protocol = args
    patient = make_patient(seed, index)
    folder = staging / patient_folder_name(index)
    study = study_dataset(patient)
    files = 0
    lesions: list[dict[str, object]] = []
    builder = StudyBuilder(patient, patient_protocol(protocol, seed, index))
    all_series = builder.build()
    for series in all_series:
        files += len(write_series(folder, patient, study, series))
        for instance, frame in enumerate(series.frames, start=1):
            if frame.lesion_px is not None and frame.level is not None:
                x0, y0, x1, y1 = frame.lesion_px
                lesions.append(
                    {
                        "patient_id": patient.identity.patient_id,
                        "level": frame.level.value,
                        "series": series.description,
                        "instance": instance,
                        "x0": x0,
                        "y0": y0,
                        "x1": x1,
                        "y1": y1,
                    }
                )
    labels = [
        {
            "patient_id": patient.identity.patient_id,
            "level": level.value,
            **{f.value: getattr(patient.grades[level], f.value) for f in GradeField},
        }
        for level in LEVELS
    ]
    discs = _true_discs(builder, all_series, str(study.StudyInstanceUID))
    return _PatientResult(index, files, labels, lesions, discs)


def _true_discs(
    builder: StudyBuilder, series: list[Series], study_uid: str
) -> list[dict[str, object]]:
    """Rows of discs.csv for one study, from the head down: each drawn disc's true centre
    (patient mm), whether it lies inside the mid-sagittal T2 image ("" without a T2 SAG), and
    the axial T2 image nearest it (the true mid-disc slice), empty where no slice crosses it."""
    from lumbar.synth.dicom_out import sop_instance_uid

    axial = [
        (s, instance, frame)
        for s in series
        if s.description.startswith("T2 AX")
        for instance, frame in enumerate(s.frames, start=1)
    ]
    planes = [(f.position, f.row_dir, f.col_dir) for _, _, f in axial]
    gaps = [s.spacing_between or s.thickness for s, _, _ in axial]
    sagittal = [s for s in series if s.description == "T2 SAG"]
    middle = sagittal[0].frames[len(sagittal[0].frames) // 2] if sagittal else None
    centres = {
        **builder.upper_disc_centres(),
        **{level.value: pose.centre for level, pose in builder.disc_poses().items()},
    }
    rows: list[dict[str, object]] = []
    for level, centre in sorted(centres.items(), key=lambda kv: SPINE_LEVELS.index(kv[0])):
        nearest = nearest_plane(centre, planes, gaps) if level in LEVEL_NAMES else None
        s, instance, _ = axial[nearest] if nearest is not None else (None, 0, None)
        rows.append(
            {
                "patient_id": builder.patient.identity.patient_id,
                "study_uid": study_uid,
                "protocol": builder.protocol.value,
                "level": level,
                "x_mm": round(centre[0], 3),
                "y_mm": round(centre[1], 3),
                "z_mm": round(centre[2], 3),
                "sagittal_visible": "" if middle is None else int(_inside(middle, centre)),
                "axial_series": s.description if s is not None else "",
                "axial_instance": instance if s is not None else "",
                "axial_sop_uid": sop_instance_uid(builder.patient, s, instance) if s else "",
            }
        )
    return rows


def _inside(frame: Frame, point: tuple[float, float, float]) -> bool:
    """Whether `point` projects inside the frame's image (a sagittal slice's field of view)."""
    from lumbar.ingest.geometry import SlicePlane

    plane = SlicePlane.from_tags(
        frame.position, (*frame.row_dir, *frame.col_dir), (frame.spacing, frame.spacing)
    )
    x, y = plane.patient_to_pixel(point)
    rows, cols = frame.pixels.shape
    return bool(0 <= x <= cols - 1 and 0 <= y <= rows - 1)


def _worker_signals() -> None:
    """Workers ignore Ctrl-C and die on SIGTERM: the parent alone handles interruption."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _csv_text(columns: tuple[str, ...], rows: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def synthesize_cohort(
    out: Path,
    *,
    patients: int,
    seed: int = 0,
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
    protocol: Protocol = Protocol.PAPER,
) -> CohortSummary:
    """Write `patients` phantom studies to `out`; deterministic for a given seed and protocol.

    `protocol` chooses how the axial T2 series are acquired (`lumbar.synth.protocols`); every
    protocol writes discs.csv, the true disc centres and mid-disc axial images.

    Everything is written to a hidden staging folder beside `out` and moved into place only
    when complete, so an interrupted run leaves `out` as it was and no half-written files.

    Raises:
        UserError: patients < 1, `out` not empty without `force`, or not writable.
    """
    if patients < 1:
        raise UserError(f"--patients must be at least 1, got {patients}")
    if workers < 0:
        raise UserError(f"--workers must be 0 (one per core) or more, got {workers}")
    started = time.perf_counter()
    with staged_dir(Path(out), force=force) as staging:
        results = _run(staging, seed, patients, workers or os.cpu_count() or 1, progress, protocol)
        results.sort(key=lambda r: r.index)
        labels = [row for r in results for row in r.labels]
        lesions = [row for r in results for row in r.lesions]
        write_text_atomic(staging / "labels.csv", _csv_text(LABEL_COLUMNS, labels))
        write_text_atomic(staging / "lesions.csv", _csv_text(LESION_COLUMNS, lesions))
        discs = [row for r in results for row in r.discs]
        write_text_atomic(staging / DISCS_CSV, _csv_text(DISC_COLUMNS, discs))
    return CohortSummary(
        patients=patients,
        files=sum(r.files for r in results),
        seconds=time.perf_counter() - started,
    )


def _run(
    staging: Path, seed: int, patients: int, workers: int, progress: bool, protocol: Protocol
) -> list[_PatientResult]:
    from lumbar.progress import progress_bar

    jobs = [(staging, seed, index, protocol) for index in range(patients)]
    workers = max(1, min(workers, patients))
    results: list[_PatientResult] = []
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("synth patients", total=patients)
        if workers == 1:
            for job in jobs:
                results.append(_synthesize_patient(job))
                bar.advance(task)
            return results
        context = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        pool = (context or mp).Pool(workers, initializer=_worker_signals)
        try:
            for result in pool.imap_unordered(_synthesize_patient, jobs):
                results.append(result)
                bar.advance(task)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    return results
