"""`lumbar report EXP`: the experiment report, one self-contained HTML file and a Markdown twin.

The report reads an experiment folder (`lumbar experiment CONFIG --out EXP`) and sets our
numbers beside the paper's published ones (Al-kubaisi & Khamiss 2022, Tables 5-14): the dataset
(Table 5, Figures 3-5), the ROI, Tables 6-9, 11 and 13 as mean and 95% interval over seeds or
folds, the Eq. 8 improvement rates of Tables 10, 12 and 14, learning curves, confusion matrices
and Grad-CAM grids like Figures 17-18. Missing or failed runs are shown as missing.

Example:
    >>> html, md = write_report(Path("EXP"))   # EXP/report.html, EXP/report.md, EXP/report-files/
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lumbar.files import staged_dir, write_text_atomic
from lumbar.report.collect import load_experiment
from lumbar.report.document import build_report
from lumbar.report.render import render_html, render_markdown

__all__ = ["REPORT_FILES", "REPORT_HTML", "REPORT_MD", "write_report"]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = "report-files"


def write_report(
    exp_dir: Path,
    *,
    gradcam: bool = True,
    gradcam_images: int = 4,
    step: Callable[[str], None] = lambda name: None,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[Path, Path]:
    """Write EXP/report.html, EXP/report.md and the PNGs in EXP/report-files/.

    Each file is written atomically (the figures folder is staged and swapped in whole), so a
    failed or interrupted report leaves the previous one as it was.

    Args:
        exp_dir: the experiment folder (with plan.json).
        gradcam: draw Grad-CAM grids (loads the first seed's models; the slowest part).
        gradcam_images: test images per Grad-CAM grid.
        step: called with each part's name as it starts (progress display).
        log: called with one-line notes on what was left out.

    Returns:
        (html path, markdown path).

    Raises:
        UserError: EXP is not an experiment folder.
    """
    exp_dir = Path(exp_dir)
    load_experiment(exp_dir)  # fail on a bad folder before anything is staged
    with staged_dir(exp_dir / REPORT_FILES, force=True) as staging:
        report = build_report(
            exp_dir, staging, gradcam=gradcam, gradcam_images=gradcam_images, step=step, log=log
        )
        step("writing")
        html = render_html(report)
        markdown = render_markdown(report, REPORT_FILES)
    html_path, md_path = exp_dir / REPORT_HTML, exp_dir / REPORT_MD
    write_text_atomic(md_path, markdown)
    write_text_atomic(html_path, html)
    return html_path, md_path
