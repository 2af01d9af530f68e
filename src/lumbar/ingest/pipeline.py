"""`lumbar ingest`: DICOM folder or PACS -> index -> classified series -> the paper's 8 images
per patient, de-identified, plus OUT/images.csv and OUT/ingest-report.csv (section 3.1).

Nothing identifying is written: patients are pseudonyms (`lumbar.pseudonym`), source files
appear as keyed hashes unless `report_paths` is asked for, and every output file is written
atomically, so a killed run rerun into the same OUT gives the same output as one clean run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar import __version__
from lumbar.errors import UserError
from lumbar.files import atomic_path, csv_text
from lumbar.grading import DiscLevel
from lumbar.ingest.classify import (
    Rules,
    SeriesClass,
    SeriesSummary,
    classify_series,
    load_rules,
    summarize_series,
)
from lumbar.ingest.deid import BurnedInAnnotation, DeidentificationProblem, deidentify
from lumbar.ingest.discs import (
    CsvDiscCentres,
    DiscCentre,
    DiscCentreSource,
    LocaliserSource,
    SagittalSeries,
    spine_order,
)
from lumbar.ingest.export import PixelProblem, render_frame
from lumbar.ingest.geometry import SlicePlane
from lumbar.ingest.index import (
    INDEX_FILE,
    IndexStats,
    StudyIndex,
    default_workers,
    die_with_parent,
    index_folder,
    path_key,
    uid_hash,
)
from lumbar.ingest.pacs import DicomWebSource, PacsFilters, is_dicomweb_url
from lumbar.ingest.read import InstanceRecord, walk_folder
from lumbar.ingest.select import (
    AxialChoice,
    AxialResult,
    AxialSelection,
    Frame,
    FrameOrder,
    Rule,
    SelectionProblem,
    select_axial_images,
    select_myelo,
    select_sagittal,
    slice_disc_geometry,
)
from lumbar.pseudonym import SECRET_FILE, SECRET_TEMP, load_secret
from lumbar.visualize.contact_sheet import write_contact_sheet

IMAGES_CSV = "images.csv"
REPORT_CSV = "ingest-report.csv"
DISCS_CSV = "discs.csv"
AXIAL_GEOMETRY_CSV = "axial-geometry.csv"
AXIAL_GEOMETRY_COLUMNS = ("patient_id", "source_uid_hash", "frame", "instance", "level",
                          "distance_mm", "angle_deg", "chosen")  # fmt: skip
DISCS_COLUMNS = ("patient_id", "level", "image", "x", "y", "width", "height", "confidence",
                 "x_mm", "y_mm", "z_mm")  # fmt: skip
IMAGES_COLUMNS = (
    "patient_id",
    "view",
    "level",
    "image",
    "source_uid_hash",
    "selection_rule",
    "selection_reason",
    "disc_distance_mm",
    "disc_angle_deg",
    "disc_x",
    "disc_y",
    "row_spacing_mm",
    "col_spacing_mm",
)
REPORT_COLUMNS = ("file", "patient_id", "series", "severity", "reason")
_PSEUDONYM_DIR = re.compile(r"^P[0-9a-f]{12}$")
_OUTPUT_NAME = re.compile(r"^P[0-9a-f]{12}_(1|2|3|12|23|34|45|51)\.(png|dcm)$")
_DATE_RANGE = re.compile(r"^(\d{8})?-?(\d{8})?$")


@dataclass
class IngestOptions:
    """Everything `lumbar ingest` can be told; defaults follow the paper."""

    order: FrameOrder = FrameOrder.INSTANCE
    axial_selection: AxialSelection = AxialSelection.AUTO
    disc_centres: DiscCentreSource | None = None
    bit_depth: int = 8
    export_dicom: bool = False
    rules: Rules = field(default_factory=Rules)
    workers: int = 0
    study_date: str | None = None
    modality: str | None = None
    patients: frozenset[str] | None = None
    report_paths: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 16):
            raise UserError(f"bit depth must be 8 or 16, got {self.bit_depth}", option="bit_depth")
        if self.workers < 0:
            raise UserError(
                f"workers must be >= 0 (0 = one per core), got {self.workers}", option="workers"
            )
        if self.study_date is not None:
            match = _DATE_RANGE.match(self.study_date)
            if not match or not any(match.groups()):
                raise UserError(
                    f"study date {self.study_date!r} must be YYYYMMDD, YYYYMMDD-YYYYMMDD, "
                    "YYYYMMDD- or -YYYYMMDD",
                    option="study_date",
                )

    @classmethod
    def from_options(
        cls,
        *,
        order: str = "instance",
        axial_selection: str = "auto",
        disc_centres: str | Path | None = "localizer",
        rules: Path | None = None,
        patients: str | None = None,
        **options: Any,
    ) -> IngestOptions:
        """Options as a user spells them: enum values as text, a rules YAML file, the
        patients as "P1,P2" or "@FILE" (`parse_patient_list`), disc centres as `localizer`
        (the learnt sagittal localiser, the default), `none`, or a CSV (`CsvDiscCentres`);
        the rest as the fields.

        Raises:
            UserError: an unknown frame order or axial selection, an unreadable rules or
                patients file, or a field out of range.
        """
        try:
            frame_order = FrameOrder(order)
        except ValueError:
            raise UserError(
                f"frame order must be 'instance' or 'position', got {order!r}", option="order"
            ) from None
        try:
            axial = AxialSelection(axial_selection)
        except ValueError:
            choices = ", ".join(f"'{m.value}'" for m in AxialSelection)
            raise UserError(
                f"axial selection must be one of {choices}, got {axial_selection!r}",
                option="axial_selection",
            ) from None
        source = disc_centre_source(disc_centres)
        return cls(
            order=frame_order,
            axial_selection=axial,
            disc_centres=source,
            rules=load_rules(rules),
            patients=parse_patient_list(patients),
            **options,
        )


def disc_centre_source(spec: str | Path | None) -> DiscCentreSource | None:
    """Where disc centres come from, as a user spells it: `localizer` (the learnt sagittal
    localiser, `LocaliserSource`), `none` (or None), or the path of a CSV (`CsvDiscCentres`).

    Raises:
        UserError: the CSV is missing or malformed.
    """
    text = str(spec).strip() if spec is not None else "none"
    if text.lower() == "none":
        return None
    if text.lower() in ("localizer", "localiser"):
        return LocaliserSource()
    return CsvDiscCentres(Path(text))


def parse_patient_list(value: str | None) -> frozenset[str] | None:
    """`P1,P2` or `@file` (one pseudonym per line, # comments) -> a set of pseudonyms.

    Raises:
        UserError: an unreadable file, or no pseudonym at all.
    """
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot read patient list {path}: {err.strerror}") from None
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        items = [part.strip() for part in value.split(",")]
    found = frozenset(item for item in items if item)
    if not found:
        raise UserError("the patient list names no pseudonyms", option="patients")
    return found


@dataclass
class SeriesDecision:
    """One series as classification saw it (for --explain and the report)."""

    patient: str
    study_date: str
    summary: SeriesSummary
    series_class: SeriesClass
    reason: str
    chosen: bool = False


@dataclass
class ExportTask:
    """One output image: which frame of which instance, and where it goes."""

    patient: str
    view: str
    level: str
    name: str  # file stem, e.g. P0123456789ab_45
    sop_uid: str
    series_uid: str
    study_uid: str
    frame: int
    file_key: str
    rule: str = ""
    reason: str = ""
    distance_mm: float | None = None
    angle_deg: float | None = None
    disc_pixel: tuple[float, float] | None = None
    spacing: tuple[float, float] | None = None


@dataclass(frozen=True)
class IngestedImage:
    """One selected, de-identified image: a row of OUT/images.csv (`IMAGES_COLUMNS`).

    Attributes:
        patient_id: the pseudonym.
        view: "axial_t2", "sagittal_t2" or "myelo".
        level: the disc level of an axial image ("" for the others).
        image: the PNG's path relative to OUT, e.g. "P0123456789ab/P0123456789ab_45.png".
        source_uid_hash: keyed hash of the source SOPInstanceUID.
        selection_rule: eq1, eq2, stacks or geometry (`select.Rule`).
        selection_reason: why that rule, in a few words.
        disc_distance_mm, disc_angle_deg: the disc centre's signed distance from the image
            plane and the angle between image and disc plane ("" where unknown).
        disc_x, disc_y: the disc centre projected into the image (pixel x = column, y = row;
            "" where unknown), for the disc-centred ROI.
        row_spacing_mm, col_spacing_mm: the image's PixelSpacing ("" where absent).
    """

    patient_id: str
    view: str
    level: str
    image: str
    source_uid_hash: str
    selection_rule: str = ""
    selection_reason: str = ""
    disc_distance_mm: str = ""
    disc_angle_deg: str = ""
    disc_x: str = ""
    disc_y: str = ""
    row_spacing_mm: str = ""
    col_spacing_mm: str = ""

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in IMAGES_COLUMNS)


@dataclass
class ReportRow:
    """One problem or note of OUT/ingest-report.csv (`REPORT_COLUMNS`); `file` is a keyed
    hash of the source file unless paths were asked for."""

    file: str = ""
    patient_id: str = ""
    series: str = ""
    severity: str = "error"
    reason: str = ""

    def as_tuple(self) -> tuple[str, ...]:
        return (self.file, self.patient_id, self.series, self.severity, self.reason)


@dataclass
class IngestSummary:
    """What one ingest did: counts for the summary line, and its result in memory.

    Attributes:
        selected: the images written, as in OUT/images.csv (in its order).
        report: the problems and notes, as in OUT/ingest-report.csv (in its order).
        contact_sheet_patients: patients drawn into the contact sheet (0: none asked for).
    """

    index: IndexStats
    patients: int = 0
    complete_patients: int = 0
    images: int = 0
    exported: int = 0
    problems: int = 0
    seconds: float = 0.0
    decisions: list[SeriesDecision] = field(default_factory=list)
    selected: list[IngestedImage] = field(default_factory=list)
    report: list[ReportRow] = field(default_factory=list)
    contact_sheet_patients: int = 0
    discs: list[DiscMarker] = field(default_factory=list)


class NoUsableImages(UserError):
    """The source held no image the paper's selection could use; `summary` says what was
    found, and its `report` why each file or series was left out."""

    def __init__(self, message: str, summary: IngestSummary) -> None:
        super().__init__(message)
        self.summary = summary


def ingest(
    source: str | Path,
    out: Path,
    options: IngestOptions | None = None,
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
    explain: Callable[[list[SeriesDecision]], None] | None = None,
    contact_sheet: Path | None = None,
) -> IngestSummary:
    """Run the whole ingest; see the module docstring.

    Args:
        source: a folder of DICOM files, or a DICOMweb URL (`http://host:port/dicom-web`).
        out: output folder: empty, absent, or the OUT of an earlier ingest (resumed).
        options: see `IngestOptions`.
        progress: optional factory `(task name, total) -> advance(n)` for a progress display.
        explain: optional callback given every series' classification once the selection is
            made (also when nothing usable was found, when it is most needed).
        contact_sheet: also draw the selected images of the first 12 patients into this PNG.

    Returns:
        The summary, with the selected images and the report in memory.

    Raises:
        NoUsableImages: nothing usable found in the source (the outputs are still written).
        UserError: bad arguments or an unusable OUT.
    """
    with _quiet_dependencies():
        summary = _ingest(source, out, options or IngestOptions(), progress, explain)
    if contact_sheet is not None:
        summary.contact_sheet_patients = write_contact_sheet(
            [(image.patient_id, Path(out) / image.image) for image in summary.selected],
            contact_sheet,
        )
    return summary


@contextlib.contextmanager
def _quiet_dependencies() -> Iterator[None]:
    """Silence pydicom's warnings and log lines for the run: they quote file paths, which may
    contain patient names, and every problem they describe is already in the report."""
    logger = logging.getLogger("pydicom")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="pydicom")
            warnings.filterwarnings("ignore", category=UserWarning, message=".*[Ff]ile.*")
            yield
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


def _ingest(
    source: str | Path,
    out: Path,
    options: IngestOptions,
    progress: Callable[[str, int | None], Callable[[int], None]] | None,
    explain: Callable[[list[SeriesDecision]], None] | None,
) -> IngestSummary:
    start = time.perf_counter()
    out = Path(out)
    text_source = str(source)
    pacs = is_dicomweb_url(text_source)
    if not pacs:
        root = Path(source)
        if not root.is_dir():
            raise UserError(f"source {root} is not a folder (or a http(s):// DICOMweb URL)")
        if _inside(out, root):
            raise UserError("output folder must not be inside the source folder")
    _prepare_out(out, options.force)
    secret = load_secret(out, create=True)
    _remove_partial_files(out)
    index = StudyIndex.open(out / INDEX_FILE, secret)
    try:
        workers = default_workers(options.workers)
        keys: dict[str, Path] = {}
        walk_report: list[ReportRow] = []
        web: DicomWebSource | None = None
        if pacs:
            web = DicomWebSource(text_source)
            filters = PacsFilters(options.study_date, options.modality, options.patients)
            totals: dict[str, Callable[[int], None]] = {}

            def on_total(total: int) -> None:
                if progress:
                    totals["advance"] = progress("indexing DICOMweb metadata", total)

            def on_progress(n: int) -> None:
                if "advance" in totals:
                    totals["advance"](n)

            stats = web.index(index, filters, secret, on_progress, on_total)
        else:
            walk = walk_folder(root)
            files = walk.files
            advance = progress("indexing headers", len(files)) if progress else None
            stats, keys = index_folder(index, root, files, secret, workers, advance)
            for path, severity, reason in walk.skipped:  # loops, broken links, ...
                key = path_key(path.relative_to(root).as_posix(), secret)
                keys.setdefault(key, path)
                walk_report.append(ReportRow(file=key, severity=severity, reason=reason))
        summary = IngestSummary(index=stats)
        report: list[ReportRow] = list(walk_report)
        for file_key, severity, reason in index.problems():
            report.append(ReportRow(file=file_key, severity=severity, reason=reason))
        found = _Found()
        tasks, decisions = _plan(index, options, report, keys, found)
        summary.decisions = decisions
        summary.patients = len({d.patient for d in decisions})
        done = _export(index, tasks, out, options, secret, keys, web, workers, report, progress)
        summary.exported = done
        complete: dict[str, int] = defaultdict(int)
        for task in tasks:
            complete[task.patient] += 1
        summary.complete_patients = sum(1 for n in complete.values() if n == 8)
        summary.images = len(tasks)
        if options.report_paths and not pacs:
            for row in report:  # only on request: folder names may contain patient names
                if row.file in keys:
                    row.file = keys[row.file].relative_to(root).as_posix()
        summary.selected = _selected_images(tasks)
        summary.report = _sorted_report(report)
        _write_images_csv(out, summary.selected)
        _write_report(out, summary.report)
        exported = {image.image for image in summary.selected}
        summary.discs = [m for m in found.markers if m.image in exported]
        _write_output(
            out / DISCS_CSV,
            csv_text(DISCS_COLUMNS, [m.as_tuple() for m in summary.discs]).encode(),
        )
        _write_output(
            out / AXIAL_GEOMETRY_CSV, csv_text(AXIAL_GEOMETRY_COLUMNS, found.slices).encode()
        )
        summary.problems = sum(1 for r in report if r.severity in ("error", "warning"))
        summary.seconds = time.perf_counter() - start
    finally:
        index.close()
    if explain is not None:
        explain(summary.decisions)
    if summary.images == 0:
        raise NoUsableImages(
            f"no usable images found in the source ({stats.files} files, {summary.patients} "
            f"patients); reasons are in {out / REPORT_CSV}",
            summary,
        )
    return summary


def _plan(
    index: StudyIndex,
    options: IngestOptions,
    report: list[ReportRow],
    keys: dict[str, Path] | None = None,
    found: _Found | None = None,
) -> tuple[list[ExportTask], list[SeriesDecision]]:
    """Classify every series, choose one per view and patient, and select the frames."""
    by_series: dict[str, list[tuple[str, str, InstanceRecord]]] = defaultdict(list)
    for patient, file_key, record in index.instances():
        by_series[record.series_uid].append((patient, file_key, record))
    decisions: list[SeriesDecision] = []
    per_patient: dict[str, list[tuple[SeriesDecision, list[tuple[str, str, InstanceRecord]]]]]
    per_patient = defaultdict(list)
    for series_uid in sorted(by_series):
        members = by_series[series_uid]
        patient = members[0][0]
        records = [r for _, _, r in members]
        first = records[0]
        if options.patients is not None and patient not in options.patients:
            continue
        if options.modality and first.modality.upper() != options.modality.upper():
            continue
        if options.study_date and not _date_in_range(first.study_date, options.study_date):
            continue
        orientations = [f.orientation for r in records for f in r.frames]
        summary = summarize_series(series_uid, records, orientations)
        verdict = classify_series(summary, options.rules)
        decision = SeriesDecision(
            patient, first.study_date, summary, verdict.series_class, verdict.reason
        )
        decisions.append(decision)
        per_patient[patient].append((decision, members))
    tasks: list[ExportTask] = []
    for patient in sorted(per_patient):
        tasks.extend(
            _plan_patient(patient, per_patient[patient], options, report, keys or {}, found)
        )
    return tasks, decisions


_VIEW_ORDER = (SeriesClass.MYELO, SeriesClass.SAGITTAL_T2, SeriesClass.AXIAL_T2)


def _plan_patient(
    patient: str,
    series: list[tuple[SeriesDecision, list[tuple[str, str, InstanceRecord]]]],
    options: IngestOptions,
    report: list[ReportRow],
    keys: dict[str, Path],
    found: _Found | None = None,
) -> list[ExportTask]:
    tasks: list[ExportTask] = []
    sagittal: _Sagittal | None = None
    for view in _VIEW_ORDER:
        candidates = [(d, m) for d, m in series if d.series_class is view]
        if not candidates:
            report.append(
                ReportRow(
                    patient_id=patient,
                    severity="error",
                    reason=f"missing series: no {view.value} series found",
                )
            )
            continue
        # Most recent study first, then the fullest series, then the lowest series number.
        candidates.sort(
            key=lambda dm: (
                _neg_date(dm[0].study_date),
                -dm[0].summary.n_images,
                dm[0].summary.series_number if dm[0].summary.series_number is not None else 1 << 30,
                dm[0].summary.series_uid,
            )
        )
        if view is SeriesClass.AXIAL_T2 and options.axial_selection in (
            AxialSelection.GEOMETRY,
            AxialSelection.AUTO,
        ):
            tasks.extend(
                _plan_axial_geometry(patient, candidates, sagittal, options, report, keys, found)
            )
            continue
        failures = []
        for decision, members in candidates:
            label = _series_label(decision.summary)
            try:
                picked, warnings = _select(view, members, options)
            except SelectionProblem as problem:
                failures.append(
                    ReportRow(
                        patient_id=patient,
                        series=label,
                        severity="error",
                        reason=f"{view.value}: {problem}",
                    )
                )
                continue
            decision.chosen = True
            if view is SeriesClass.SAGITTAL_T2:
                sagittal = _Sagittal(decision, members, picked[0][2].frame, f"{patient}_3")
            for warning in warnings:
                report.append(
                    ReportRow(patient_id=patient, series=label, severity="warning", reason=warning)
                )
            for suffix, level, choice, file_key, record in picked:
                tasks.append(_task(patient, view, level, suffix, choice, file_key, record))
            if view is SeriesClass.MYELO and len(picked) < 2:
                report.append(
                    ReportRow(
                        patient_id=patient,
                        series=label,
                        severity="warning",
                        reason="myelography series has 1 image; the paper uses 2 (only _1 written)",
                    )
                )
            break
        else:
            report.extend(failures)
            report.append(
                ReportRow(
                    patient_id=patient,
                    severity="error",
                    reason=f"missing series: no usable {view.value} series",
                )
            )
    return tasks


def _select(
    view: SeriesClass, members: list[tuple[str, str, InstanceRecord]], options: IngestOptions
) -> tuple[list[tuple[str, str, AxialChoice, str, InstanceRecord]], list[str]]:
    """(file suffix, level, choice, file_key, record) of the images picked from one series."""
    frames, owner = _frames(members)
    if view is SeriesClass.SAGITTAL_T2:
        chosen = select_sagittal(frames, options.order)
        choice = AxialChoice(chosen, Rule.EQ1, "Eq. 1: the middle sagittal frame")
        return [("3", "", choice, *owner[chosen.sop_uid])], []
    if view is SeriesClass.MYELO:
        picked = select_myelo(frames, options.order)
        reason = "Eq. 1: the central pair of myelography frames"
        return [
            (str(i), "", AxialChoice(f, Rule.EQ1, reason), *owner[f.sop_uid])
            for i, f in enumerate(picked, start=1)
        ], []
    result = select_axial_images(frames, options.order, options.axial_selection)
    rows = [
        (level.code, level.value, choice, *owner[choice.frame.sop_uid])
        for level, choice in result.chosen.items()
    ]
    rows.sort(key=lambda r: list(DiscLevel).index(DiscLevel(r[1])))
    return rows, result.warnings


def _frames(
    members: list[tuple[str, str, InstanceRecord]],
) -> tuple[list[Frame], dict[str, tuple[str, InstanceRecord]]]:
    """Every 2-D frame of the members, and each SOP instance's (file_key, record)."""
    frames: list[Frame] = []
    owner: dict[str, tuple[str, InstanceRecord]] = {}
    for _, file_key, record in members:
        owner[record.sop_uid] = (file_key, record)
        for index, geometry in enumerate(record.frames or [None]):  # type: ignore[list-item]
            frames.append(
                Frame(
                    sop_uid=record.sop_uid,
                    frame=index,
                    instance_number=record.instance_number,
                    position=geometry.position if geometry else None,
                    orientation=geometry.orientation if geometry else None,
                    spacing=geometry.spacing if geometry else None,
                    size=(record.rows, record.columns),
                )
            )
    return frames, owner


def _task(
    patient: str,
    view: SeriesClass,
    level: str,
    suffix: str,
    choice: AxialChoice,
    file_key: str,
    record: InstanceRecord,
) -> ExportTask:
    frame = choice.frame
    return ExportTask(
        patient=patient,
        view=view.value,
        level=level,
        name=f"{patient}_{suffix}",
        sop_uid=frame.sop_uid,
        series_uid=record.series_uid,
        study_uid=record.study_uid,
        frame=frame.frame,
        file_key=file_key,
        rule=choice.rule.value,
        reason=choice.reason,
        distance_mm=choice.distance_mm,
        angle_deg=choice.angle_deg,
        disc_pixel=choice.pixel,
        spacing=frame.spacing,
    )


def _plan_axial_geometry(
    patient: str,
    candidates: list[tuple[SeriesDecision, list[tuple[str, str, InstanceRecord]]]],
    sagittal: _Sagittal | None,
    options: IngestOptions,
    report: list[ReportRow],
    keys: dict[str, Path],
    found: _Found | None = None,
) -> list[ExportTask]:
    """Axial images by `geometry` or `auto`: every axial T2 series of one study together (a
    protocol may split the stacks over series), measured against the sagittal disc centres."""
    view = SeriesClass.AXIAL_T2
    by_study: dict[str, list[tuple[SeriesDecision, list[tuple[str, str, InstanceRecord]]]]]
    by_study = defaultdict(list)
    for decision, members in candidates:  # candidates are sorted: most recent study first
        by_study[members[0][2].study_uid].append((decision, members))
    studies = list(by_study)
    if sagittal is not None and sagittal.study_uid in by_study:
        studies.remove(sagittal.study_uid)
        studies.insert(0, sagittal.study_uid)
    failures = []
    for study_uid in studies:
        group = by_study[study_uid]
        members = [m for _, ms in group for m in ms]
        label = ", ".join(_series_label(d.summary) for d, _ in group)
        centres, note = _disc_centres(study_uid, sagittal, options, keys)
        frames, owner = _frames(members)
        try:
            result = select_axial_images(
                frames, options.order, options.axial_selection, centres, note, len(group)
            )
        except SelectionProblem as problem:
            failures.append(
                ReportRow(
                    patient_id=patient,
                    series=label,
                    severity="error",
                    reason=f"{view.value}: {problem}",
                )
            )
            continue
        if not result.chosen:
            failures.extend(
                ReportRow(
                    patient_id=patient, series=label, severity="error", reason=f"{view.value}: {m}"
                )
                for m in result.missing
            )
            continue
        used = {owner[c.frame.sop_uid][1].series_uid for c in result.chosen.values()}
        for decision, _ in group:
            decision.chosen = decision.chosen or decision.summary.series_uid in used
        for warning in result.warnings:
            report.append(
                ReportRow(patient_id=patient, series=label, severity="warning", reason=warning)
            )
        for note in result.notes:
            report.append(ReportRow(patient_id=patient, series=label, severity="info", reason=note))
        for missing in result.missing:
            report.append(
                ReportRow(
                    patient_id=patient,
                    series=label,
                    severity="error",
                    reason=f"{view.value}: {missing}",
                )
            )
        if centres and found is not None:
            if sagittal is not None:
                found.markers.extend(_disc_markers(patient, sagittal, centres))
            found.slices.extend(_slice_rows(patient, frames, centres, result))
        tasks = []
        for level in DiscLevel:
            choice = result.chosen.get(level)
            if choice is not None:
                file_key, record = owner[choice.frame.sop_uid]
                tasks.append(
                    _task(patient, view, level.value, level.code, choice, file_key, record)
                )
        return tasks
    report.extend(failures)
    report.append(
        ReportRow(
            patient_id=patient,
            severity="error",
            reason=f"missing series: no usable {view.value} series",
        )
    )
    return []


@dataclass(frozen=True)
class _Sagittal:
    """The patient's chosen sagittal T2 series: its members, Eq. 1 frame and output stem."""

    decision: SeriesDecision
    members: list[tuple[str, str, InstanceRecord]]
    frame: Frame
    name: str

    @property
    def study_uid(self) -> str:
        return self.members[0][2].study_uid


@dataclass
class _Found:
    """What geometric selection learnt besides the images: disc markers on the sagittal images
    (OUT/discs.csv) and every axial slice against every disc (OUT/axial-geometry.csv)."""

    markers: list[DiscMarker] = field(default_factory=list)
    slices: list[tuple[str, ...]] = field(default_factory=list)


def _slice_rows(
    patient: str, frames: list[Frame], centres: list[DiscCentre], result: AxialResult
) -> list[tuple[str, ...]]:
    """Rows of OUT/axial-geometry.csv for one patient (`AXIAL_GEOMETRY_COLUMNS`)."""
    chosen = {(c.frame.sop_uid, c.frame.frame, lv.value) for lv, c in result.chosen.items()}
    return [
        (
            patient,
            uid_hash(row.frame.sop_uid),
            str(row.frame.frame),
            "" if row.frame.instance_number is None else str(row.frame.instance_number),
            row.level,
            _number(row.distance_mm, 2),
            _number(row.angle_deg, 1),
            "1" if (row.frame.sop_uid, row.frame.frame, row.level) in chosen else "0",
        )
        for row in slice_disc_geometry(frames, centres)
    ]


@dataclass(frozen=True)
class DiscMarker:
    """A disc centre on the patient's exported sagittal image: a row of OUT/discs.csv
    (`DISCS_COLUMNS`), which FaLa uses to put its level markers on the discs."""

    patient_id: str
    level: str
    image: str
    x: float
    y: float
    width: int
    height: int
    confidence: float
    x_mm: float
    y_mm: float
    z_mm: float

    def as_tuple(self) -> tuple[str, ...]:
        return (
            self.patient_id,
            self.level,
            self.image,
            f"{self.x:.2f}",
            f"{self.y:.2f}",
            str(self.width),
            str(self.height),
            f"{self.confidence:.3f}",
            f"{self.x_mm:.2f}",
            f"{self.y_mm:.2f}",
            f"{self.z_mm:.2f}",
        )


def _disc_markers(patient: str, sagittal: _Sagittal, centres: list[DiscCentre]) -> list[DiscMarker]:
    """The centres projected into the sagittal image (none without PixelSpacing)."""
    frame = sagittal.frame
    if frame.spacing is None or frame.size is None:
        return []
    plane = SlicePlane.from_tags(frame.position, frame.orientation, frame.spacing)
    rows, cols = frame.size
    markers = []
    for centre in spine_order(centres):
        x, y = plane.patient_to_pixel(centre.xyz_mm)
        markers.append(
            DiscMarker(
                patient,
                centre.level,
                f"{patient}/{sagittal.name}.png",
                float(x),
                float(y),
                cols,
                rows,
                centre.confidence,
                *(float(v) for v in centre.xyz_mm),
            )
        )
    return markers


def _disc_centres(
    study_uid: str,
    sagittal: _Sagittal | None,
    options: IngestOptions,
    keys: dict[str, Path],
) -> tuple[list[DiscCentre], str]:
    """The disc centres of a study from its sagittal T2 series, or none and why."""
    if sagittal is None:
        return [], "no sagittal T2 series"
    if sagittal.study_uid != study_uid:
        return [], "the sagittal T2 series belongs to another study"
    if options.disc_centres is None:
        return [], "no disc localiser or disc centres given"
    paths = tuple(keys[k] for _, k, _ in sagittal.members if k in keys)
    try:
        centres = options.disc_centres(
            SagittalSeries(study_uid, sagittal.decision.summary.series_uid, paths)
        )
    except UserError as err:
        return [], f"disc centres: {err}"
    if not centres and not paths:
        return [], "the sagittal T2 images are not local files (DICOMweb), so no disc localised"
    if not centres:
        return [], "no discs found on the sagittal T2 series"
    return centres, ""


# ----------------------------------------------------------------------------- export


def _export(
    index: StudyIndex,
    tasks: list[ExportTask],
    out: Path,
    options: IngestOptions,
    secret: bytes,
    keys: dict[str, Path],
    web: Any,
    workers: int,
    report: list[ReportRow],
    progress: Callable[[str, int | None], Callable[[int], None]] | None,
) -> int:
    """Write every task's PNG (and DICOM), skipping outputs already made from the same source."""
    wanted: set[str] = set()
    todo: list[tuple[ExportTask, str]] = []
    for task in tasks:
        fingerprint = _fingerprint(task, options)
        names = [f"{task.patient}/{task.name}.png"]
        if options.export_dicom:
            names.append(f"{task.patient}/{task.name}.dcm")
        wanted.update(names)
        up_to_date = all(_is_current(index, out, name, fingerprint) for name in names)
        if not up_to_date:
            todo.append((task, fingerprint))
    _remove_stale(index, out, wanted)
    advance = progress("exporting images", len(tasks)) if progress else None
    if advance and len(tasks) - len(todo):
        advance(len(tasks) - len(todo))
    failed: set[str] = set()
    jobs = [_job(task, fingerprint, out, options, secret, keys) for task, fingerprint in todo]
    results: Sequence[tuple[str, list[tuple[str, str, int]], str]]
    if web is not None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results_iter = pool.map(lambda job: _export_job(job, web), jobs)
            results = _collect(results_iter, index, advance)
    elif workers > 1 and len(jobs) > 8:
        results = _export_in_processes(jobs, workers, index, advance)
    else:
        results = _collect(map(_export_job, jobs), index, advance)
    by_name = {task.name: task for task in tasks}
    for name, _, problem in results:
        if problem:
            failed.add(name)
            task = by_name[name]
            report.append(
                ReportRow(
                    file=task.file_key,
                    patient_id=task.patient,
                    severity="error",
                    reason=f"{task.view} image: {problem}",
                )
            )
    tasks[:] = [t for t in tasks if t.name not in failed]
    return len(todo) - len(failed)


CRASHED = "the image decoder crashed on this file (its process died); not exported"


def _export_in_processes(
    jobs: list[dict[str, Any]],
    workers: int,
    index: StudyIndex,
    advance: Callable[[int], None] | None,
) -> list[tuple[str, list[tuple[str, str, int]], str]]:
    """Export in a process pool; if a native decoder kills a worker (the pool breaks), the
    jobs without a result are redone one process each, so only the image whose decoding
    kills its process is lost, and it is reported."""
    collected: list[tuple[str, list[tuple[str, str, int]], str]] = []
    try:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            _collect(pool.map(_export_job, jobs, chunksize=8), index, advance, collected)
    except BrokenProcessPool:
        done = {name for name, _, _ in collected}
        isolated = (_export_isolated(job) for job in jobs if job["name"] not in done)
        _collect(isolated, index, advance, collected)
    return collected


def _export_isolated(job: dict[str, Any]) -> tuple[str, list[tuple[str, str, int]], str]:
    """One export job in a process of its own; a crash there is that image's problem."""
    try:
        with ProcessPoolExecutor(max_workers=1, initializer=die_with_parent) as pool:
            return pool.submit(_export_job, job).result()
    except BrokenProcessPool:
        return job["name"], [], CRASHED


def _collect(
    results: Any,
    index: StudyIndex,
    advance: Callable[[int], None] | None,
    collected: list[tuple[str, list[tuple[str, str, int]], str]] | None = None,
) -> list[tuple[str, list[tuple[str, str, int]], str]]:
    """Record each result's outputs in the index as it arrives (into `collected`, so what
    arrived before a failure is kept)."""
    collected = [] if collected is None else collected
    for result in results:
        _, written, _ = result
        if written:
            index.record_exports(written)
        if advance:
            advance(1)
        collected.append(result)
    return collected


def _job(
    task: ExportTask,
    fingerprint: str,
    out: Path,
    options: IngestOptions,
    secret: bytes,
    keys: dict[str, Path],
) -> dict[str, Any]:
    path = keys.get(task.file_key)
    return {
        "name": task.name,
        "patient": task.patient,
        "folder": str(out / task.patient),
        "path": str(path) if path else None,
        "frame": task.frame,
        "sop": task.sop_uid,
        "series": task.series_uid,
        "study": task.study_uid,
        "bit_depth": options.bit_depth,
        "dicom": options.export_dicom,
        "secret": secret,
        "fingerprint": fingerprint,
    }


class _NotExported(Exception):
    """An image left out of the export; the message is the report's reason (no patient data)."""


def _export_job(
    job: dict[str, Any], web: Any = None
) -> tuple[str, list[tuple[str, str, int]], str]:
    """Render one task; returns (name, [(relative output, fingerprint, size)], problem).

    Everything that reads, decodes or de-identifies the source happens before anything is
    written, inside one catch: a damaged file costs its own image (listed in the report with
    the reason), never the batch. With DICOM export, an image is written only when both its
    PNG and its de-identified DICOM could be made.
    """
    name = job["name"]
    try:
        png, dicom = _render_job(job, web)
    except (PixelProblem, BurnedInAnnotation, UserError, _NotExported) as problem:
        return name, [], str(problem)
    except Exception as err:
        return name, [], f"cannot read or convert image ({type(err).__name__}); not exported"
    folder = Path(job["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, data in ((".png", png), (".dcm", dicom)):
        if data is None:
            continue
        _write_output(folder / f"{name}{suffix}", data)
        written.append((f"{job['patient']}/{name}{suffix}", job["fingerprint"], len(data)))
    return name, written, ""


def _render_job(job: dict[str, Any], web: Any) -> tuple[bytes, bytes | None]:
    """The PNG bytes and (with DICOM export) the de-identified DICOM bytes of one task."""
    if web is not None:
        ds = web.retrieve(job["study"], job["series"], job["sop"])
    else:
        import pydicom

        if job["path"] is None:
            raise _NotExported("source file is no longer there")
        ds = pydicom.dcmread(job["path"], force=True)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise _NotExported("image declares burned-in annotation (text in the pixels); skipped")
    png = render_frame(ds, job["frame"], job["bit_depth"])
    if not job["dicom"]:
        return png, None
    try:
        return png, _deidentified_bytes(ds, job["patient"], job["secret"], deidentify)
    except (BurnedInAnnotation, UserError):
        raise
    except DeidentificationProblem as problem:
        raise _NotExported(
            f"cannot de-identify for DICOM export: {problem}; not exported"
        ) from None
    except Exception as err:
        raise _NotExported(
            f"cannot de-identify for DICOM export ({type(err).__name__}); not exported"
        ) from None


def _deidentified_bytes(ds: Any, pseudonym: str, secret: bytes, deidentify: Any) -> bytes:
    from pydicom.filewriter import dcmwrite

    deidentify(ds, pseudonym, secret)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _fingerprint(task: ExportTask, options: IngestOptions) -> str:
    """What an output file depends on; a new lumbar version re-renders (windowing may change)."""

    return (
        f"{uid_hash(task.sop_uid)}:{task.frame}:{options.bit_depth}:"
        f"{int(options.export_dicom)}:{__version__}"
    )


def _is_current(index: StudyIndex, out: Path, name: str, fingerprint: str) -> bool:
    stored = index.export_fingerprint(name)
    if stored is None or stored[0] != fingerprint:
        return False
    try:
        return (out / name).stat().st_size == stored[1]
    except OSError:
        return False


def _remove_stale(index: StudyIndex, out: Path, wanted: set[str]) -> None:
    """Delete earlier outputs (our naming pattern only) that this run no longer produces."""
    removed = []
    for folder in sorted(out.iterdir()):
        if not folder.is_dir() or not _PSEUDONYM_DIR.match(folder.name):
            continue
        for path in sorted(folder.iterdir()):
            name = f"{folder.name}/{path.name}"
            if _OUTPUT_NAME.match(path.name) and name not in wanted:
                path.unlink(missing_ok=True)
                removed.append(name)
        if not any(folder.iterdir()):
            folder.rmdir()
    if removed:
        index.forget_exports(removed)


# ----------------------------------------------------------------------------- CSV files


def _selected_images(tasks: list[ExportTask]) -> list[IngestedImage]:
    """The exported images in images.csv's order: by patient, then the paper's order."""
    order = {"1": 0, "2": 1, "3": 2, **{lv.code: 3 + i for i, lv in enumerate(DiscLevel)}}
    rows = sorted(tasks, key=lambda t: (t.patient, order[t.name.rsplit("_", 1)[1]]))
    return [
        IngestedImage(
            task.patient,
            task.view,
            task.level,
            f"{task.patient}/{task.name}.png",
            uid_hash(task.sop_uid),
            task.rule,
            task.reason,
            _number(task.distance_mm, 2),
            _number(task.angle_deg, 1),
            _number(task.disc_pixel[0] if task.disc_pixel else None, 2),
            _number(task.disc_pixel[1] if task.disc_pixel else None, 2),
            _number(task.spacing[0] if task.spacing else None, 6),
            _number(task.spacing[1] if task.spacing else None, 6),
        )
        for task in rows
    ]


def _number(value: float | None, digits: int) -> str:
    """A CSV cell: the value rounded, or "" when unknown."""
    return "" if value is None else f"{round(value, digits):g}"


def _sorted_report(report: list[ReportRow]) -> list[ReportRow]:
    """The report without repeats, by patient, series, severity, file and reason."""
    severity = {"error": 0, "warning": 1, "info": 2}
    rows = sorted(
        {r.as_tuple() for r in report},
        key=lambda r: (r[1], r[2], severity.get(r[3], 3), r[0], r[4]),
    )
    return [ReportRow(*row) for row in rows]


def _write_images_csv(out: Path, images: list[IngestedImage]) -> None:
    _write_output(
        out / IMAGES_CSV, csv_text(IMAGES_COLUMNS, [im.as_tuple() for im in images]).encode()
    )


def _write_report(out: Path, report: list[ReportRow]) -> None:
    _write_output(
        out / REPORT_CSV, csv_text(REPORT_COLUMNS, [r.as_tuple() for r in report]).encode()
    )


# ----------------------------------------------------------------------------- helpers

OUTPUT_MODE = 0o644  # outputs are shared with the labeling app and other users of the host


def _write_output(target: Path, data: bytes) -> None:
    """Write through a temporary file and an atomic rename, readable like any output file."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, OUTPUT_MODE)


# what an ingest writes into OUT before its index exists (the secret, in two steps) and the
# index's own files: a folder holding only these is an earlier ingest killed while starting
_STARTING_FILES = frozenset(
    {SECRET_FILE, *(INDEX_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal"))}
)


def _prepare_out(out: Path, force: bool) -> None:
    """OUT may be absent, empty, or an earlier ingest's output (also one killed before its
    index was made: only lumbar's secret is there); anything else needs --force."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    reusable = (out / INDEX_FILE).exists() or (
        out.is_dir()
        and all(p.name in _STARTING_FILES or SECRET_TEMP.match(p.name) for p in out.iterdir())
    )
    if out.is_dir() and any(out.iterdir()) and not reusable and not force:
        raise UserError(
            f"output folder {out} is not empty and is not an earlier ingest's output; "
            "allow writing into it to ingest anyway",
            option="force",
        )
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"output folder {out} is not writable")


def _remove_partial_files(out: Path) -> None:
    """Delete `.part` files a killed run left behind (atomic writes in progress)."""
    for folder in [out, *[p for p in out.iterdir() if p.is_dir() and _PSEUDONYM_DIR.match(p.name)]]:
        for path in folder.glob(".*.part"):
            path.unlink(missing_ok=True)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _date_in_range(date: str, date_range: str) -> bool:
    match = _DATE_RANGE.match(date_range)
    low, high = match.groups() if match else (None, None)
    if "-" not in date_range:
        high = low
    if not date:
        return False
    return (low is None or date >= low) and (high is None or date <= high)


def _neg_date(date: str) -> str:
    """A sort key that puts later YYYYMMDD dates first (and unknown dates last)."""
    if not date.isdigit():
        return "~"
    return "".join(chr(ord("9") - ord(c) + ord("0")) for c in date)


def _series_label(summary: SeriesSummary) -> str:
    number = summary.series_number if summary.series_number is not None else "?"
    return f"series {number} ({summary.n_images} images)"


def format_explanation(decisions: list[SeriesDecision]) -> str:
    """One line per series: patient, series, plane, timing, class, chosen or not, and why."""
    lines = []
    for d in sorted(
        decisions, key=lambda d: (d.patient, d.summary.series_number or 0, d.summary.series_uid)
    ):
        s = d.summary
        te = f"{s.echo_time:g}" if s.echo_time is not None else "-"
        tr = f"{s.repetition_time:g}" if s.repetition_time is not None else "-"
        mark = "*" if d.chosen else " "
        lines.append(
            f"{mark} {d.patient}  {_series_label(s):<24} {s.description[:24]!r:<27} "
            f"{s.plane.value:<8} TE={te:<6} TR={tr:<6} -> {d.series_class.value:<11} {d.reason}"
        )
    return "\n".join(lines)
