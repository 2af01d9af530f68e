"""`lumbar dataset stats`: the paper's dataset tables and charts for any manifest.

Tables (CSV) and charts (PNG), after the paper's section 3.2:
    images_by_view.csv / fig3_images_by_view.png        Figure 3 (images per series)
    table5_disc_state_by_level.csv                      Table 5 (disc state by level)
    fig4_disc_state.png                                 Figure 4 (disc state classes, and the
                                                        normal/abnormal grouping)
    fig5_disc_state_by_level.png                        Figure 5 (images per disc level)
    stenosis_by_grade.csv / fig_stenosis.png            SCS, RFS, LFS counts by grade
    splits.csv / fig9_splits.png                        Figure 9 (split sizes by class)
    stats.json                                          all of the above, machine-readable

Counts are of rows (images) with a grade; empty grades are counted as "unlabelled", never as
normal.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar.data.manifest import SPLITS, Manifest, read_manifest
from lumbar.files import (
    csv_text,
    prepare_output_dir,
    replace_dir,
    write_json_atomic,
    write_text_atomic,
)
from lumbar.grading import STENOSIS_FIELDS, DiscLevel, DiscState, GradeField, Stenosis
from lumbar.visualize.charts import dataset_charts

VIEW_ORDER = ("axial_t2", "sagittal_t2", "myelo")


@dataclass
class DatasetStats:
    """The counts behind the tables and charts; see the module docstring."""

    images: int
    patients: int
    views: dict[str, int]
    disc_state_by_level: dict[str, dict[str, int]]  # level -> class name -> count
    grades: dict[str, dict[str, int]]  # field -> grade name -> count (incl. "unlabelled")
    splits: dict[str, dict[str, int]]  # split -> {"patients", "images", class counts}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "images": self.images,
            "patients": self.patients,
            "views": self.views,
            "disc_state_by_level": self.disc_state_by_level,
            "grades": self.grades,
            "splits": self.splits,
        }


def compute_stats(manifest: Manifest) -> DatasetStats:
    """Count images per view, disc state per level, grades per field, and split sizes."""
    views = Counter(v or "unspecified" for v in manifest.column("view"))
    ordered_views = {v: views[v] for v in VIEW_ORDER if v in views}
    ordered_views.update({v: n for v, n in sorted(views.items()) if v not in ordered_views})

    states = manifest.grades("disc_state")
    levels = manifest.column("level")
    state_names = [s.name.lower() for s in DiscState]
    by_level: dict[str, dict[str, int]] = {}
    known = [lv.value for lv in DiscLevel]
    present = sorted({lv for lv, s in zip(levels, states, strict=True) if s >= 0})
    for level in [lv for lv in known if lv in present] + [lv for lv in present if lv not in known]:
        counts = Counter(
            int(s) for lv, s in zip(levels, states, strict=True) if lv == level and s >= 0
        )
        by_level[level or "unspecified"] = {name: counts[i] for i, name in enumerate(state_names)}
    if by_level:
        by_level["Total"] = {
            name: sum(row[name] for row in by_level.values()) for name in state_names
        }

    grades: dict[str, dict[str, int]] = {}
    for grade_field in GradeField:
        values = manifest.grades(grade_field.value)
        counts = Counter(int(v) for v in values)
        grades[grade_field.value] = {
            member.name.lower(): counts[int(member)] for member in grade_field.scale
        }
        grades[grade_field.value]["unlabelled"] = counts[-1]

    splits: dict[str, dict[str, int]] = {}
    if manifest.has_column("split"):
        split_values = manifest.column("split")
        patients = manifest.patients()
        names = [s for s in SPLITS if s in split_values] + sorted(
            {s for s in split_values if s not in SPLITS}
        )
        for name in names:
            rows = [i for i, s in enumerate(split_values) if s == name]
            counts = Counter(int(states[i]) for i in rows if states[i] >= 0)
            splits[name or "unassigned"] = {
                "patients": len({patients[i] for i in rows}),
                "images": len(rows),
                **{n: counts[i] for i, n in enumerate(state_names)},
                "abnormal": sum(counts[i] for i in range(1, len(state_names))),
            }
    return DatasetStats(
        images=len(manifest),
        patients=len(set(manifest.patients())),
        views=ordered_views,
        disc_state_by_level=by_level,
        grades=grades,
        splits=splits,
    )


def format_table5(stats: DatasetStats) -> str:
    """Table 5 as aligned text, for the terminal."""
    if not stats.disc_state_by_level:
        return "no disc_state grades in this manifest"
    names = [s.name.capitalize() for s in DiscState]
    lines = [f"{'Disc':<8}" + "".join(f"{n:>14}" for n in names)]
    for level, counts in stats.disc_state_by_level.items():
        lines.append(f"{level:<8}" + "".join(f"{v:>14}" for v in counts.values()))
    return "\n".join(lines)


def write_stats(manifest_path: Path, out: Path, *, force: bool = False) -> DatasetStats:
    """Compute the statistics of a manifest and write tables and charts into `out`.

    Raises:
        UserError: an invalid manifest or output folder; nothing is written.
    """
    out = Path(out)
    prepare_output_dir(out, force=force)
    manifest = read_manifest(manifest_path)
    stats = compute_stats(manifest)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_tables(stats, staging)
        dataset_charts(stats, staging)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats


def _write_tables(stats: DatasetStats, folder: Path) -> None:
    write_json_atomic(folder / "stats.json", stats.to_dict())
    write_text_atomic(
        folder / "images_by_view.csv",
        csv_text(["view", "images"], [[v, n] for v, n in stats.views.items()]),
    )
    names = [s.name.lower() for s in DiscState]
    write_text_atomic(
        folder / "table5_disc_state_by_level.csv",
        csv_text(
            ["level", *names],
            [[lv, *(c[n] for n in names)] for lv, c in stats.disc_state_by_level.items()],
        ),
    )
    grade_names = [s.name.lower() for s in Stenosis]
    write_text_atomic(
        folder / "stenosis_by_grade.csv",
        csv_text(
            ["field", *grade_names, "unlabelled"],
            [
                [
                    f.value,
                    *(stats.grades[f.value][g] for g in grade_names),
                    stats.grades[f.value]["unlabelled"],
                ]
                for f in STENOSIS_FIELDS
            ],
        ),
    )
    if stats.splits:
        keys = list(next(iter(stats.splits.values())))
        write_text_atomic(
            folder / "splits.csv",
            csv_text(
                ["split", *keys], [[s, *(c[k] for k in keys)] for s, c in stats.splits.items()]
            ),
        )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
