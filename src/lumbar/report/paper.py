"""The paper's published numbers (Tables 5-14), read from the package's paper_results.yaml.

The numbers are transcribed once, each under the table it comes from, so the report can set them
beside ours without anyone copying them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lumbar.errors import UserError

__all__ = ["PAPER_METRICS", "PaperResults", "load_paper_results"]

#: The metrics of Tables 6-9, 11 and 13, in the paper's column order.
PAPER_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class PaperResults:
    """The published tables, keyed by table number ("5" ... "14"), and the paper's reference."""

    reference: dict[str, Any]
    tables: dict[str, dict[str, Any]]
    notes: tuple[str, ...]

    def citation(self) -> str:
        """The reference in one line: authors (year). Title. Journal volume, article. doi."""
        r = self.reference
        return (
            f"{r['authors']} ({r['year']}). {r['title']}. {r['journal']} {r['volume']}, "
            f"{r['article']}. doi:{r['doi']}"
        )

    def table(self, number: str) -> dict[str, Any]:
        """One table's entry (title, kind, rows ...)."""
        return self.tables[str(number)]

    def metrics(self, number: str, backbone: str, mode: str | None = None) -> dict[str, float]:
        """The published metrics (in %) of one backbone in Table `number`; for Tables 11 and 13
        also one mode ("frozen" = without fine-tuning, "finetune"). Empty when not published."""
        rows = self.tables.get(str(number), {}).get("rows", {})
        row = rows.get(backbone) or {}
        if mode is not None and "f1" not in row:
            row = row.get(mode) or {}
        return {k: float(v) for k, v in row.items() if k in PAPER_METRICS}

    def improvement(self, number: str, backbone: str) -> dict[str, float]:
        """Table 10/12/14's "before", "after" and "rate" of one backbone (empty if absent)."""
        row = self.tables.get(str(number), {}).get("rows", {}).get(backbone) or {}
        return {k: float(v) for k, v in row.items()}

    def backbones(self, number: str) -> list[str]:
        """The backbones of a table, in the paper's row order."""
        return list(self.tables.get(str(number), {}).get("rows", {}))


def load_paper_results(path: Path | None = None) -> PaperResults:
    """Read the paper's numbers (default: the file shipped with lumbar).

    Raises:
        UserError: the file is missing or not the expected shape.
    """

    try:
        if path is None:
            text = (
                resources.files("lumbar.report")
                .joinpath("paper_results.yaml")
                .read_text(encoding="utf-8")
            )
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read the paper's results file: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        raise UserError("the paper's results file has no 'tables' mapping")
    return PaperResults(
        reference=dict(data.get("reference") or {}),
        tables={str(k): v for k, v in data["tables"].items()},
        notes=tuple(data.get("notes") or ()),
    )
