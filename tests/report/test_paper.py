"""The paper's numbers in paper_results.yaml against the paper's own text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.shared_data import SHARED_DATA

from lumbar.report.paper import PAPER_METRICS, load_paper_results

REFERENCE = (
    SHARED_DATA.parent / "reference" / "paper-al-kubaisi-2022-transfer-learning-lumbar-disc.txt"
)
NAMES = {"VGG16": "vgg16", "VGG19": "vgg19", "ResNet50": "resnet50", "MobileNetV2": "mobilenet_v2"}
LEVELS = {"L12": "L1-L2", "L23": "L2-L3", "L34": "L3-L4", "L45": "L4-L5", "L51": "L5-S1",
          "Total": "Total"}  # fmt: skip
MODES = {"Without Fine-Tuning": "frozen", "With Fine-Tuning": "finetune"}


def paper_tables() -> dict[str, list[list[str]]]:
    """Each "Table N." of the text: its tab-separated rows up to the next blank-line gap."""
    if not REFERENCE.is_file():
        pytest.skip(f"paper text {REFERENCE} is absent (as in a user's clone)")
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    tables: dict[str, list[list[str]]] = {}
    for i, line in enumerate(lines):
        found = re.match(r"Table (\d+)\. ", line)
        if not found:
            continue
        rows = []
        for following in lines[i + 1 :]:
            if not following.strip():
                if rows:
                    break
                continue
            if "\t" not in following:
                break
            rows.append([cell.strip() for cell in following.split("\t")])
        tables[found.group(1)] = rows
    return tables


def test_reference_and_table_titles() -> None:
    paper = load_paper_results()
    assert paper.reference["doi"] == "10.3390/electronics11010085"
    assert "Al-kubaisi" in paper.citation() and "2022" in paper.citation()
    if REFERENCE.is_file():
        text = REFERENCE.read_text(encoding="utf-8")
        for number in ("5", "6", "7", "8", "9", "10", "11", "12", "13", "14"):
            assert f"Table {number}. {paper.table(number)['title']}" in text


def test_every_published_number_matches_the_text() -> None:
    text = paper_tables()
    paper = load_paper_results()
    # Table 5: disc counts per level
    rows = {LEVELS[r[0]]: [int(v) for v in r[1:]] for r in text["5"][1:]}
    assert rows == paper.table("5")["rows"]
    # Tables 6-9: one row per backbone
    for number in ("6", "7", "8", "9"):
        parsed = {NAMES[r[0]]: [float(v) for v in r[1:]] for r in text[number][1:]}
        assert set(parsed) == set(paper.backbones(number))
        for backbone, values in parsed.items():
            ours = paper.metrics(number, backbone)
            assert [ours[m] for m in PAPER_METRICS] == values, (number, backbone)
    # Tables 11 and 13: backbone header rows, then without/with fine-tuning
    for number in ("11", "13"):
        backbone = None
        checked = 0
        for row in text[number][1:]:
            if row[0] in NAMES:
                backbone = NAMES[row[0]]
                continue
            values = [float(v) for v in row[1:]]
            ours = paper.metrics(number, backbone, MODES[row[0]])  # type: ignore[arg-type]
            assert [ours[m] for m in PAPER_METRICS] == values, (number, backbone, row[0])
            checked += 1
        assert checked == 4
    # Tables 10, 12 and 14: before, after, rate
    for number in ("10", "12", "14"):
        for row in text[number][1:]:
            before, after, rate = (float(v) for v in row[1:])
            assert paper.improvement(number, NAMES[row[0]]) == {
                "before": before, "after": after, "rate": rate
            }  # fmt: skip


def test_vgg16_table9_f1_is_the_papers() -> None:
    """The number a reader checks first: VGG16 with ROI and fine-tuning, F1 87.04 (Table 9)."""
    paper = load_paper_results()
    assert paper.metrics("9", "vgg16")["f1"] == 87.04
    text = paper_tables()
    row = next(r for r in text["9"] if r[0] == "VGG16")
    assert float(row[4]) == 87.04


def test_bad_file_is_one_line(tmp_path: Path) -> None:
    from lumbar.errors import UserError

    (tmp_path / "p.yaml").write_text("just: text\n")
    with pytest.raises(UserError, match="no 'tables'"):
        load_paper_results(tmp_path / "p.yaml")
