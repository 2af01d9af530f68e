"""A one-page picture of a study: every series at a glance and the axial disc stacks by level.

Works on any folder of DICOM files (names and nesting do not matter). With the phantom's
labels.csv, each axial row is titled with that level's Table 3 grades. No identifier of the
patient appears on the figure.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.errors import UserError
from lumbar.files import atomic_path
from lumbar.grading import LEVELS, DiscState, GradeField, Herniation, Stenosis


@dataclass
class _Image:
    instance: int
    pixels: np.ndarray
    window: tuple[float, float] | None


@dataclass
class _Series:
    description: str
    number: int
    normal: np.ndarray
    echo_time: float
    images: list[_Image]


def windowed(pixels: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Map stored values to 0-1 by WindowCenter/Width, else by robust 1-99.5 percentiles."""
    pixels = pixels.astype(np.float32)
    if window is not None and window[1] > 0:
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        lo, hi = (float(v) for v in np.percentile(pixels, [1.0, 99.5]))
    return np.clip((pixels - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _first_value(value: object) -> float:
    if value is None:
        raise ValueError("missing")
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]


def read_study(folder: Path) -> list[_Series]:
    """Read every DICOM image under `folder`, grouped into series ordered by SeriesNumber."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, _Series] = {}
    members: dict[str, list[_Image]] = defaultdict(list)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array
        except (InvalidDicomError, AttributeError, ValueError, OSError):
            continue
        if pixels.ndim != 2:
            continue
        uid = str(ds.get("SeriesInstanceUID", path.parent))
        if uid not in groups:
            iop = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), float)
            groups[uid] = _Series(
                description=str(ds.get("SeriesDescription", "")) or "(no description)",
                number=int(ds.get("SeriesNumber", 0) or 0),
                normal=np.cross(iop[:3], iop[3:]),
                echo_time=float(ds.get("EchoTime", 0) or 0),
                images=[],
            )
        try:
            window = (_first_value(ds.WindowCenter), _first_value(ds.WindowWidth))
        except (AttributeError, ValueError):
            window = None
        members[uid].append(_Image(int(ds.get("InstanceNumber", 0) or 0), pixels, window))
    for uid, series in groups.items():
        series.images = sorted(members[uid], key=lambda im: im.instance)
    return sorted(groups.values(), key=lambda s: s.number)


def _is_axial_disc_stack(series: _Series) -> bool:
    return abs(series.normal[2]) > 0.8 and len(series.images) == 5 * len(LEVELS)


def _grade_text(row: dict[str, str]) -> str:
    state = DiscState(int(row[GradeField.DISC_STATE.value])).name.lower()
    hern = Herniation(int(row[GradeField.HERNIATION.value]))
    parts = [state + (f" ({hern.name.lower()})" if hern is not Herniation.NONE else "")]
    for field in (GradeField.SCS, GradeField.RFS, GradeField.LFS):
        parts.append(f"{field.value.upper()} {Stenosis(int(row[field.value])).name.lower()}")
    return "\n".join(parts)


def _labels_for(labels_csv: Path, patient_id: str) -> dict[str, dict[str, str]]:
    try:
        with open(labels_csv, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("patient_id") == patient_id]
    except OSError as err:
        raise UserError(f"cannot read labels file {labels_csv}: {err.strerror}") from None
    return {r["level"]: r for r in rows}


def write_study_montage(study: Path, out: Path, labels_csv: Path | None = None) -> None:
    """Draw the study under `study` as one PNG at `out`.

    Raises:
        UserError: the folder is missing or holds no readable DICOM image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pydicom

    study = Path(study)
    if not study.is_dir():
        raise UserError(f"study folder {study} does not exist")
    series = read_study(study)
    if not series:
        raise UserError(f"no readable DICOM images under {study}")
    labels: dict[str, dict[str, str]] = {}
    if labels_csv is not None:
        first = next(p for p in study.rglob("*") if p.is_file())
        patient_id = str(pydicom.dcmread(first, stop_before_pixels=True).get("PatientID", ""))
        labels = _labels_for(labels_csv, patient_id)

    axial = [s for s in series if _is_axial_disc_stack(s)]
    axial_series = max(axial, key=lambda s: s.echo_time) if axial else None
    overview = [s for s in series if s is not axial_series]
    top = [(s, im) for s in overview for im in _overview_images(s)]
    cols = max(len(top), 6)
    rows = 1 + (len(LEVELS) if axial_series else 0)
    fig = plt.figure(figsize=(2.2 * cols, 2.4 * rows), facecolor="black")
    grid = fig.add_gridspec(rows, cols, hspace=0.25, wspace=0.05)
    for k, (s, im) in enumerate(top):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(windowed(im.pixels, im.window), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{s.description} #{im.instance}", color="white", fontsize=9)
        ax.axis("off")
    if axial_series is not None:
        for row, level in enumerate(LEVELS, start=1):  # L1-L2 at the top
            first = (level.eq2_index - 1) * 5  # stacks run from L5-S1 (x = 1) upward
            stack = axial_series.images[first : first + 5]
            for k, im in enumerate(stack):
                ax = fig.add_subplot(grid[row, 1 + k])
                ax.imshow(windowed(im.pixels, im.window), cmap="gray", vmin=0, vmax=1)
                picked = k == 2  # the middle slice: the one the paper's Eq. 2 selects
                ax.set_title(
                    f"#{im.instance}" + (" (Eq. 2)" if picked else ""),
                    color="yellow" if picked else "white",
                    fontsize=8,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_color("yellow" if picked else "black")
                    spine.set_linewidth(2 if picked else 0)
            text_ax = fig.add_subplot(grid[row, 0])
            text_ax.axis("off")
            text = level.value
            if level.value in labels:
                text += "\n" + _grade_text(labels[level.value])
            text_ax.text(
                0.95,
                0.5,
                text,
                color="white",
                fontsize=9,
                ha="right",
                va="center",
                transform=text_ax.transAxes,
            )
    fig.suptitle(
        f"{len(series)} series, {sum(len(s.images) for s in series)} images"
        + (f"  ·  axial series: {axial_series.description}" if axial_series else ""),
        color="white",
        fontsize=11,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90, facecolor="black")
    plt.close(fig)


def _overview_images(series: _Series) -> list[_Image]:
    """The middle image of a stack, or every image of a short series (localisers, myelograms)."""
    if len(series.images) <= 3:
        return series.images
    return [series.images[len(series.images) // 2]]
