"""`lumbar report`: a self-contained HTML (and Markdown) report of a real, tiny experiment."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers.experiment_folder import FAILED, NOT_RUN, TRAINED
from typer.testing import CliRunner

from lumbar.errors import UserError
from lumbar.metrics import improvement_rate
from lumbar.report import write_report
from lumbar.report.paper import load_paper_results

CHROMIUM = "/usr/bin/chromium"


def test_metrics(exp: Path, run: dict) -> dict:
    return json.loads((exp / "runs" / run["id"] / "metrics.json").read_text())["test"]


test_metrics.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def section(html: str, anchor: str) -> str:
    """The HTML from the heading with id `anchor` to the next h3/h2."""
    start = html.index(f'id="{anchor}"')
    end = min(i for i in (html.find("<h3", start + 1), html.find("<h2", start + 1)) if i > 0)
    return html[start:end]


@pytest.fixture(scope="module")
def report(trained_exp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full report (with Grad-CAM) of a copy of the trained experiment."""
    exp = tmp_path_factory.mktemp("report") / trained_exp.name
    shutil.copytree(trained_exp, exp)
    html, md = write_report(exp)
    assert html == exp / "report.html" and md == exp / "report.md"
    return exp


def test_html_is_self_contained(report: Path) -> None:
    html = (report / "report.html").read_text(encoding="utf-8")
    assert 'src="http' not in html and "<link" not in html and "<script" not in html
    assert "url(" not in html and "@import" not in html
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) >= 8  # dataset charts, ROI, curves, confusion matrices, Grad-CAM
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # every string is escaped: the config's text shows as text, not markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_tables_hold_our_numbers_and_the_papers(report: Path) -> None:
    html = (report / "report.html").read_text(encoding="utf-8")
    paper = load_paper_results()
    # Table 6: two seeds of the frozen, no-ROI run -> their mean F1, in %
    f1 = [100 * test_metrics(report, run)["f1"] for run in TRAINED[:2]]
    table6 = section(html, "table6")
    assert f"{sum(f1) / 2:.2f}" in table6 and "n=2" in table6
    assert f"{paper.metrics('6', 'vgg19')['f1']:.2f}" in table6  # the paper's VGG19 F1, 86.92
    # Table 7: one run -> its own bootstrap interval
    single = test_metrics(report, TRAINED[2])
    table7 = section(html, "table7")
    low, high = (100 * v for v in single["ci"]["f1"])
    assert f'{100 * single["f1"]:.2f} <span class="ci">[{low:.2f}, {high:.2f}]' in table7
    assert "n=1, bootstrap" in table7
    # Table 9 beside the paper's VGG16 (87.04); Table 8 only planned a failed run
    assert f"{paper.metrics('9', 'vgg16')['f1']:.2f}" in section(html, "table9")
    assert "missing: 1 failed" in section(html, "table8")
    # Table 10: Eq. 8 from Table 7's to Table 9's F1, beside the paper's rates
    after = 100 * test_metrics(report, TRAINED[3])["f1"]
    rate = improvement_rate(100 * single["f1"], after)
    table10 = section(html, "table10")
    assert f"{rate:+.1f}" in table10
    assert ">16<" in table10  # the paper's ResNet50 rate
    # the run list says what is missing and why
    runs = html[html.index(">Runs</h2>") :]
    assert NOT_RUN["id"] in runs and "not run" in runs
    assert FAILED["id"] in runs and "RuntimeError: boom" in runs


def test_markdown_links_the_written_figures(report: Path) -> None:
    md = (report / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((report-files/[^)]+\.png)\)", md)
    assert len(links) >= 8
    for link in links:
        assert (report / link).is_file(), link
    assert "### Table 9." in md and "| | paper | 84.62 | 88.68 | 85.45 | 87.04 |" in md
    assert "Grad-CAM" in md and "gradcam-efficientnet_lite0/grid.png" in md


def test_partial_experiment_says_what_is_missing(exp_copy: Path) -> None:
    """Only frozen runs left, one of them without test metrics: the report still renders."""
    for run in TRAINED[2:]:
        shutil.rmtree(exp_copy / "runs" / run["id"])
    metrics_path = exp_copy / "runs" / TRAINED[1]["id"] / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    del metrics["test"]
    metrics_path.write_text(json.dumps(metrics))
    html_path, _ = write_report(exp_copy, gradcam=False)
    html = html_path.read_text(encoding="utf-8")
    table6 = section(html, "table6")
    assert "n=1, bootstrap" in table6  # one seed left
    assert "1 no test metrics" in section(html, "table6")
    assert "missing: 1 not run" in section(html, "table7")
    assert "No backbone has test results on both sides" in section(html, "table10") or (
        "No rate for EfficientNet-Lite0" in section(html, "table10")
    )
    assert "Grad-CAM grids left out" in html
    assert "5 of 6 runs have no test metrics" in html


def test_pretrained_runs_compare_with_scratch_when_imagenet_is_missing(exp_copy: Path) -> None:
    """Without ImageNet runs (weights not downloaded), Table 12 compares Dataset A with the
    experiment's fine-tuned runs from scratch, and says so in its header."""
    trained = TRAINED[3]  # fine-tuned with the ROI: one set of real metrics for both sides
    runs = []
    for source, procedure in (("scratch", 1), ("dataset_a", 2)):
        run = {**trained, "source": source, "procedure": procedure}
        run["id"] = f"p{procedure}-efficientnet_lite0-{source}-finetune-grid-s0"
        run["weights"] = "scratch" if source == "scratch" else "pretrain:dataset_a-x"
        shutil.copytree(exp_copy / "runs" / trained["id"], exp_copy / "runs" / run["id"])
        (exp_copy / "runs" / run["id"] / "spec.json").write_text(json.dumps(run))
        runs.append(run)
    plan = json.loads((exp_copy / "plan.json").read_text())
    plan["runs"] = runs
    (exp_copy / "plan.json").write_text(json.dumps(plan))
    html_path, md_path = write_report(exp_copy, gradcam=False)
    table12 = section(html_path.read_text(encoding="utf-8"), "table12")
    assert "from scratch" in table12 and "this experiment has no ImageNet runs" in table12
    md = md_path.read_text(encoding="utf-8")
    md12 = md[md.index("### Table 12") : md.index("### Table 13")]
    f1 = 100 * test_metrics(exp_copy, trained)["f1"]
    # the same metrics on both sides: F1 before = after, and Eq. 8 gives 0
    assert f"| **EfficientNet-Lite0** | ours | {f1:.2f} | {f1:.2f} | +0.0 |" in md12


def test_rewrite_is_atomic(exp_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(exp_copy, gradcam=False)
    before = (exp_copy / "report.html").read_bytes()
    figures = sorted(p.name for p in (exp_copy / "report-files").iterdir())

    def broken(report: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr("lumbar.report.render_html", broken)  # where write_report uses it
    with pytest.raises(RuntimeError):
        write_report(exp_copy, gradcam=False)
    assert (exp_copy / "report.html").read_bytes() == before
    assert sorted(p.name for p in (exp_copy / "report-files").iterdir()) == figures
    assert not list(exp_copy.glob(".report-files.partial-*"))


def test_cli(exp_copy: Path, tmp_path: Path) -> None:
    from lumbar.cli import app

    result = CliRunner().invoke(app, ["report", str(exp_copy), "--no-gradcam"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and (exp_copy / "report.md").is_file()
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(result.exception, UserError)
    assert "not an experiment folder" in str(result.exception)
    assert "--no-gradcam" in CliRunner().invoke(app, ["report", "--help"]).output


def test_opens_in_a_browser_without_errors(report: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package chromium; make test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                else errors.append(f"request {r.url}"))  # fmt: skip
        page.goto((report / "report.html").as_uri())
        assert page.title().startswith("lumbar experiment report")
        assert page.locator("table.results").count() == 6
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        browser.close()
    assert broken == 0
    assert errors == []


def test_pretraining_runs_of_the_plan_are_listed(exp_copy: Path) -> None:
    """An experiment with pretraining runs (as the demo's quick config has) reports each one's
    status: one finished with its seconds, one never started."""
    from lumbar.report.collect import load_experiment

    done = exp_copy / "pretrain" / "dataset_a-x"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"seconds": 12.5}))
    (done / "DONE").write_text("")
    plan = json.loads((exp_copy / "plan.json").read_text())
    plan["pretrain"] = [{"id": "dataset_a-x"}, {"id": "dataset_b-y"}]
    (exp_copy / "plan.json").write_text(json.dumps(plan))
    pretrain = load_experiment(exp_copy).pretrain
    assert [(p["id"], p["status"], p["seconds"]) for p in pretrain] == [
        ("dataset_a-x", "done", 12.5),
        ("dataset_b-y", "not run", None),
    ]
