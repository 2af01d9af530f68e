"""The HTML and Markdown writers: jinja2 templates (package data) filled from a `Report`.

The HTML is one self-contained file: images as base64 PNG data URIs, inline CSS, no script and
no external link, every string escaped (autoescape). The Markdown refers to the PNGs in
EXP/report-files/.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lumbar.report.aggregate import Estimate
from lumbar.report.document import Report
from lumbar.report.paper import PAPER_METRICS
from lumbar.report.tables import METRIC_TITLES, backbone_title

__all__ = ["render_html", "render_markdown"]


def fmt(value: float | None, digits: int = 2) -> str:
    """A number with fixed decimals, or an en dash when missing."""
    return "–" if value is None else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 2) -> str:
    """A difference with its sign."""
    return "–" if value is None else f"{value:+.{digits}f}"


def interval(e: Estimate, digits: int = 2) -> str:
    """ "[low, high]" of an estimate, or "" when it has none."""
    if e.low is None or e.high is None:
        return ""
    return f"[{e.low:.{digits}f}, {e.high:.{digits}f}]"


def method(e: Estimate) -> str:
    """How the interval was made, in words, with n."""
    if e.mean is None:
        return "no result"
    if e.method == "t":
        return f"n={e.n}, 95% t-interval over runs"
    if e.method == "bootstrap":
        return "n=1, 95% patient-bootstrap interval of the run"
    return f"n={e.n}, no interval"


def short_method(e: Estimate) -> str:
    if e.mean is None:
        return ""
    return {"t": f"n={e.n}", "bootstrap": "n=1, bootstrap"}.get(e.method, f"n={e.n}")


def _environment(markdown: bool) -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("lumbar.report", "templates"),
        autoescape=not markdown,  # every template of the HTML writer escapes
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=fmt,
        signed=signed,
        interval=interval,
        method=method,
        short_method=short_method,
        backbone=backbone_title,
        md=lambda s: str(s).replace("|", "\\|").replace("\n", " "),
    )
    env.globals.update(METRICS=PAPER_METRICS, METRIC_TITLES=METRIC_TITLES)
    return env


def _context(report: Report) -> dict[str, Any]:
    exp = report.experiment
    return {
        "r": report,
        "exp": exp,
        "paper": report.paper,
        "improvements": {t.number: t for t in report.improvements},
        "p1_tables": [t for t in report.tables if t.number in ("6", "7", "8", "9")],
        "p2_table": next(t for t in report.tables if t.number == "11"),
        "p3_table": next(t for t in report.tables if t.number == "13"),
        "extra_tables": [t for t in report.tables if t.number is None],
    }


def render_html(report: Report) -> str:
    """The self-contained HTML report."""

    def image(path: Path | None) -> str:
        if path is None or not Path(path).is_file():
            return ""
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return f"data:image/png;base64,{data}"

    env = _environment(markdown=False)
    env.globals["image"] = image
    return env.get_template("report.html.j2").render(**_context(report))


def render_markdown(report: Report, files_name: str = "report-files") -> str:
    """The Markdown report; figures are links to PNGs under `files_name`/."""

    def image(path: Path | None) -> str:
        if path is None:
            return ""
        return f"{files_name}/{Path(path).relative_to(report.files).as_posix()}"

    env = _environment(markdown=True)
    env.globals["image"] = image
    return env.get_template("report.md.j2").render(**_context(report))
