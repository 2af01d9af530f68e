"""The report's tables, shaped like the paper's: Tables 6-9, 11 and 13 (metrics per backbone,
mean and 95% interval over seeds or folds, beside the published value) and Tables 10, 12 and 14
(Eq. 8 improvement rates), each with a short paragraph generated from the numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lumbar.metrics import improvement_rate
from lumbar.report.aggregate import Estimate, estimate, t_interval
from lumbar.report.collect import DONE, Experiment, RunRecord
from lumbar.report.paper import PAPER_METRICS, PaperResults

__all__ = [
    "BACKBONE_TITLES",
    "ImprovementRow",
    "ImprovementTable",
    "ResultRow",
    "ResultTable",
    "build_improvements",
    "build_tables",
    "table_number",
]

METRIC_TITLES = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1"}
BACKBONE_TITLES = {
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "mobilenet_v2": "MobileNetV2",
    "efficientnet_lite0": "EfficientNet-Lite0",
}
SOURCE_TITLES = {
    "imagenet": "ImageNet",
    "dataset_a": "Dataset A (labelled)",
    "dataset_b": "Dataset B (unlabelled)",
    "scratch": "no pretraining (from scratch)",
}
MODE_TITLES = {"frozen": "Without fine-tuning", "finetune": "With fine-tuning"}
#: Table number of each ImageNet (ROI applied, mode) cell of Procedure 1.
P1_TABLES = {
    (False, "frozen"): "6",
    (False, "finetune"): "7",
    (True, "frozen"): "8",
    (True, "finetune"): "9",
}
SOURCE_TABLES = {"dataset_a": "11", "dataset_b": "13"}


def backbone_title(name: str) -> str:
    return BACKBONE_TITLES.get(name, name)


def table_number(run: RunRecord) -> str:
    """The paper table a run belongs to, or "extra:<source>:<roi>:<mode>" for others."""
    if run.source == "imagenet":
        return P1_TABLES[(run.roi_applied, run.mode)]
    if run.source in SOURCE_TABLES:
        return SOURCE_TABLES[run.source]
    return f"extra:{run.source}:{run.roi}:{run.mode}"


@dataclass
class ResultRow:
    """One row: a backbone (and for Tables 11/13 a mode), its runs, our estimates and the
    paper's values."""

    backbone: str
    mode: str | None
    label: str
    runs: list[RunRecord]
    ours: dict[str, Estimate]
    paper: dict[str, float]
    missing: str = ""  # why some or all runs have no numbers

    @property
    def done(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == DONE]

    def diff(self, metric: str) -> float | None:
        """Our mean minus the paper's value, in percentage points."""
        ours, paper = self.ours[metric].mean, self.paper.get(metric)
        return None if ours is None or paper is None else ours - paper


@dataclass
class ResultTable:
    """A table like the paper's Tables 6-9, 11 or 13 (or an extra one the paper lacks)."""

    key: str
    number: str | None
    title: str
    rows: list[ResultRow]
    text: str = ""
    slug: str = ""
    roi: str = ""

    @property
    def runs(self) -> list[RunRecord]:
        return [r for row in self.rows for r in row.runs]

    @property
    def planned(self) -> bool:
        return bool(self.runs)


@dataclass
class ImprovementRow:
    """Eq. 8 of one backbone: F1 before and after, the rate of the means, and the per-replicate
    rates (paired by seed/fold) with their t-interval."""

    backbone: str
    before: Estimate
    after: Estimate
    rate: float | None
    paired: Estimate
    paper: dict[str, float]
    planned: bool = True  # the experiment has runs on at least one side


@dataclass
class ImprovementTable:
    """Table 10, 12 or 14."""

    number: str
    title: str
    before_label: str
    after_label: str
    rows: list[ImprovementRow]
    text: str = ""
    compared: str = ""  # which of our tables are compared
    notes: list[str] = field(default_factory=list)


def _percent_values(runs: list[RunRecord], metric: str) -> tuple[list[float], Any]:
    values = [
        100.0 * float(r.test[metric])  # type: ignore[index]
        for r in runs
        if r.test and r.test.get(metric) is not None
    ]
    single = None
    if len(values) == 1:
        ci = (runs[0].test or {}).get("ci", {}).get(metric)
        single = None if not ci else [100.0 * float(v) for v in ci]
    return values, single


def _clip(e: Estimate) -> Estimate:
    """A t-interval of a percentage cut to [0, 100] (few runs make it wider than possible)."""
    if e.low is None or e.high is None:
        return e
    return Estimate(e.mean, max(0.0, e.low), min(100.0, e.high), e.n, e.method)


def _missing_text(runs: list[RunRecord]) -> str:
    counts = Counter(r.status for r in runs if r.status != DONE)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _row(
    backbone: str, mode: str | None, label: str, runs: list[RunRecord], paper: dict[str, float]
) -> ResultRow:
    done = sorted((r for r in runs if r.status == DONE), key=lambda r: r.replicate)
    ours = {}
    for metric in PAPER_METRICS:
        values, single = _percent_values(done, metric)
        ours[metric] = _clip(estimate(values, single))
    missing = "not in this experiment" if not runs else _missing_text(runs)
    return ResultRow(backbone, mode, label, runs, ours, paper, missing)


def _order(backbones: set[str], paper_order: list[str]) -> list[str]:
    known = list(BACKBONE_TITLES)
    rest = sorted(
        backbones - set(paper_order),
        key=lambda b: (b not in known, known.index(b) if b in known else 0, b),
    )
    return [*paper_order, *rest]


def build_tables(exp: Experiment, paper: PaperResults) -> list[ResultTable]:
    """Tables 6-9, 11 and 13 (always, so the paper's numbers are shown even where this
    experiment has no runs), then a table for each other (source, ROI, mode) group."""
    groups: dict[str, list[RunRecord]] = {}
    for run in exp.runs:
        groups.setdefault(table_number(run), []).append(run)
    tables: list[ResultTable] = []
    for number in ("6", "7", "8", "9"):
        entry = paper.table(number)
        runs = groups.get(number, [])
        by_backbone: dict[str, list[RunRecord]] = {}
        for run in runs:
            by_backbone.setdefault(run.backbone, []).append(run)
        rois = sorted({r.roi for r in runs})
        rows = []
        for backbone in _order(set(by_backbone), paper.backbones(number)):
            rows.append(
                _row(
                    backbone,
                    None,
                    backbone_title(backbone),
                    by_backbone.get(backbone, []),
                    paper.metrics(number, backbone),
                )
            )
        table = ResultTable(
            number, number, entry["title"], rows, slug=f"table{number}", roi=", ".join(rois)
        )
        tables.append(table)
    for number in ("11", "13"):
        entry = paper.table(number)
        runs = groups.get(number, [])
        cells: dict[tuple[str, str], list[RunRecord]] = {}
        for run in runs:
            cells.setdefault((run.backbone, run.mode), []).append(run)
        rois = sorted({r.roi for r in runs})
        rows = []
        for backbone in _order({b for b, _ in cells}, paper.backbones(number)):
            for mode in ("frozen", "finetune"):
                rows.append(
                    _row(
                        backbone,
                        mode,
                        f"{backbone_title(backbone)}, {MODE_TITLES[mode].lower()}",
                        cells.get((backbone, mode), []),
                        paper.metrics(number, backbone, mode),
                    )
                )
        tables.append(
            ResultTable(
                number, number, entry["title"], rows, slug=f"table{number}", roi=", ".join(rois)
            )
        )
    for key in sorted(k for k in groups if k.startswith("extra:")):
        _, source, roi, mode = key.split(":", 3)
        runs = groups[key]
        by_backbone = {}
        for run in runs:
            by_backbone.setdefault(run.backbone, []).append(run)
        rows = [
            _row(b, None, backbone_title(b), by_backbone[b], {})
            for b in _order(set(by_backbone), [])
        ]
        title = (
            f"Models with weights from {SOURCE_TITLES.get(source, source)}, ROI {roi}, "
            f"{MODE_TITLES.get(mode, mode).lower()} (not in the paper)."
        )
        parts = (source, roi, mode)
        slug = "extra-" + "-".join(p.replace(":", "_").replace(",", "_") for p in parts)
        tables.append(ResultTable(key, None, title, rows, slug=slug, roi=roi))
    for table in tables:
        table.text = describe_table(table, exp)
    return tables


# ----------------------------------------------------------------------------- improvements


def _f1_by_replicate(rows: list[ResultRow]) -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    for row in rows:
        for run in row.done:
            out[run.replicate] = 100.0 * float(run.test["f1"])  # type: ignore[index]
    return out


def _improvement_row(
    backbone: str, before: list[ResultRow], after: list[ResultRow], paper: dict[str, float]
) -> ImprovementRow:
    b_est = before[0].ours["f1"] if before else Estimate(None, None, None, 0, "none")
    a_est = after[0].ours["f1"] if after else Estimate(None, None, None, 0, "none")
    rate = None
    if b_est.mean is not None and a_est.mean is not None:
        rate = improvement_rate(b_est.mean, a_est.mean)
    b_rep, a_rep = _f1_by_replicate(before), _f1_by_replicate(after)
    paired = [improvement_rate(b_rep[k], a_rep[k]) for k in sorted(set(b_rep) & set(a_rep))]
    planned = any(row.runs for row in (*before, *after))
    return ImprovementRow(
        backbone,
        b_est,
        a_est,
        rate,
        t_interval([p for p in paired if p is not None]),
        paper,
        planned,
    )


def _scratch_twin(tables: list[ResultTable], src: ResultTable) -> ResultTable | None:
    """The extra table of fine-tuned runs from scratch with the ROI of `src`, if any."""
    rois = {r.roi for r in src.runs}
    for table in tables:
        if table.number is None and table.key in {f"extra:scratch:{roi}:finetune" for roi in rois}:
            return table
    return None


def build_improvements(tables: list[ResultTable], paper: PaperResults) -> list[ImprovementTable]:
    """Tables 10 (ROI vs no ROI, fine-tuned), 12 (Dataset A vs ImageNet) and 14 (Dataset B vs
    ImageNet), by Eq. 8 on F1. Tables 12 and 14 compare with the ImageNet fine-tuned table of the
    same ROI setting as the Dataset A/B runs (Table 9 with an ROI, Table 7 without)."""
    by_number = {t.number: t for t in tables if t.number}
    out = []
    # Table 10: Table 7 -> Table 9 per backbone.
    entry = paper.table("10")
    t7, t9 = by_number["7"], by_number["9"]
    backbones = [r.backbone for r in t9.rows]
    rows = []
    for b in backbones:
        before = [r for r in t7.rows if r.backbone == b]
        after = [r for r in t9.rows if r.backbone == b]
        rows.append(_improvement_row(b, before, after, paper.improvement("10", b)))
    table = ImprovementTable(
        "10",
        entry["title"],
        entry["before_label"],
        entry["after_label"],
        rows,
        compared="Table 7 (no ROI) -> Table 9 (ROI), both fine-tuned",
    )
    table.text = describe_improvement(table, "applying the ROI")
    out.append(table)
    for number, source_table, source in (("12", "11", "Dataset A"), ("14", "13", "Dataset B")):
        entry = paper.table(number)
        src = by_number[source_table]
        uses_roi = any(r.roi_applied for r in src.runs)
        base = by_number["9" if uses_roi else "7"]
        before_label = entry["before_label"]
        compared = (
            f"Table {base.number} (ImageNet, {'ROI' if uses_roi else 'no ROI'}, "
            f"fine-tuned) -> Table {source_table} ({source}, fine-tuned)"
        )
        backbones = {r.backbone for r in src.rows if r.done}
        scratch = _scratch_twin(tables, src)
        has_imagenet = any(row.done for row in base.rows if row.backbone in backbones)
        if backbones and scratch is not None and not has_imagenet:
            # no ImageNet runs (e.g. weights not downloaded): compare with random
            # initialisation, which the experiment ran, and say so in the header
            base = scratch
            before_label = "F1-Score from scratch (%); paper: from ImageNet"
            compared = (
                f"scratch (random initialisation, ROI {scratch.roi}, fine-tuned; this "
                f"experiment has no ImageNet runs) -> Table {source_table} ({source}, fine-tuned)"
            )
        rows = []
        for b in _order({r.backbone for r in src.rows}, paper.backbones(number)):
            after = [r for r in src.rows if r.backbone == b and r.mode == "finetune"]
            before = [r for r in base.rows if r.backbone == b]
            rows.append(_improvement_row(b, before, after, paper.improvement(number, b)))
        table = ImprovementTable(
            number,
            entry["title"],
            before_label,
            entry["after_label"],
            rows,
            compared=compared,
        )
        baseline = "ImageNet" if base.number else "random initialisation"
        table.text = describe_improvement(table, f"transfer from {source} instead of {baseline}")
        out.append(table)
    return out


# ----------------------------------------------------------------------------- text


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}%"


def _replicates(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def describe_table(table: ResultTable, exp: Experiment) -> str:
    """A paragraph in the paper's results style, saying only what the numbers show."""
    rows_with = [r for r in table.rows if r.ours["f1"].mean is not None]
    planned = [r for r in table.rows if r.runs]
    if not planned:
        return (
            "This experiment has no runs for this table; the paper's published values are "
            "shown for reference."
        )
    parts = []
    if not rows_with:
        parts.append(
            f"None of the {len(planned)} planned rows has test metrics yet "
            f"({'; '.join(f'{r.label}: {r.missing}' for r in planned)})."
        )
        return " ".join(parts)
    best = max(rows_with, key=lambda r: r.ours["f1"].mean)  # type: ignore[arg-type,return-value]
    est = best.ours["f1"]
    parts.append(
        f"The highest mean F1-score was {_pct(est.mean)} ({best.label}, over {_replicates(est.n)})."
    )
    published = [r for r in table.rows if r.paper.get("f1") is not None]
    if published:
        top = max(published, key=lambda r: r.paper["f1"])
        parts.append(f"In the paper the best was {_pct(top.paper['f1'])} ({top.label}).")
    compared = [r for r in rows_with if r.paper.get("f1") is not None]
    if compared:
        above = [r for r in compared if r.diff("f1") > 0]  # type: ignore[operator]
        inside = [
            r
            for r in compared
            if r.ours["f1"].low is not None
            and r.ours["f1"].low <= r.paper["f1"] <= r.ours["f1"].high  # type: ignore[operator]
        ]
        parts.append(
            f"Our mean F1 is above the paper's for {len(above)} of {len(compared)} backbones; "
            f"the paper's value lies inside our 95% interval for {len(inside)} of them."
        )
    lacking = [r for r in planned if r.missing]
    if lacking:
        parts.append("Missing: " + "; ".join(f"{r.label} ({r.missing})" for r in lacking) + ".")
    singles = [r for r in rows_with if r.ours["f1"].n == 1]
    if singles:
        parts.append(
            "Rows from a single run show that run's patient-bootstrap interval on its test set, "
            "not a spread over seeds."
        )
    return " ".join(parts)


def describe_improvement(table: ImprovementTable, what: str) -> str:
    """A paragraph like the paper's ("... improved F1 by X% for VGG16 ... (paper: 2%)")."""
    known = [r for r in table.rows if r.rate is not None]
    if not known:
        return (
            f"No backbone has test results on both sides of this comparison ({table.compared}), "
            "so no improvement rate can be given."
        )
    phrases = []
    for row in known:
        direction = (
            "improved" if row.rate > 0 else ("did not change" if row.rate == 0 else "lowered")
        )  # type: ignore[operator]
        phrase = f"{direction} F1 by {abs(row.rate):.1f}% for {backbone_title(row.backbone)}"  # type: ignore[arg-type]
        if row.rate == 0:
            phrase = f"did not change F1 for {backbone_title(row.backbone)}"
        if row.paper.get("rate") is not None:
            phrase += f" (paper: {row.paper['rate']:g}%)"
        phrases.append(phrase)
    text = f"By Eq. 8 on the mean F1-scores, {what} " + ", ".join(phrases) + "."
    uncertain, clear = [], []
    for row in known:
        p = row.paired
        if p.n >= 2 and p.low is not None:
            (uncertain if p.low <= 0 <= p.high else clear).append(backbone_title(row.backbone))  # type: ignore[operator]
    if clear:
        text += (
            f" Over paired seeds/folds the 95% interval of the rate excludes zero for "
            f"{', '.join(clear)}."
        )
    if uncertain:
        text += (
            f" Over paired seeds/folds the 95% interval of the rate includes zero for "
            f"{', '.join(uncertain)}: there the change is not distinguishable from run-to-run "
            "variation at this number of runs."
        )
    if not clear and not uncertain:
        text += " With fewer than two paired runs per backbone there is no interval for the rate."
    missing = [backbone_title(r.backbone) for r in table.rows if r.rate is None and r.planned]
    if missing:
        text += f" No rate for {', '.join(missing)} (results missing on one side)."
    return text
