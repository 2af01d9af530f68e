"""Regenerate src/lumbar/ingest/confidentiality_profile.tsv from PS3.15 Table E.1-1 as listed
by the `dicom-anonymizer` wheel (its dicomfields_<edition>.py; BSD licence), without making that
package a dependency of lumbar:

    pip download dicom-anonymizer==2.1.0 --no-deps -d /tmp/da && unzip -q /tmp/da/*.whl -d /tmp/da
    python scripts/confidentiality_table.py \
        /tmp/da/dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py 2026c

The wheel gives each row's tag, name and Basic Profile action. It carries no option columns,
so the two options lumbar uses are filled by a rule and every such cell is flagged `inferred`:
- Retain Longitudinal Temporal Information with Modified Dates: C for every DA, DT and TM
  attribute (dates shifted by a keyed per-patient offset), except Patient's Birth Date and
  Birth Time, which lumbar keeps to the Basic Profile;
- Clean Descriptors: C for the three descriptors series classification reads (Study
  Description, Series Description, Protocol Name); other descriptors keep the basic action.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydicom.datadict import dictionary_VR, keyword_for_tag

ACTIONS = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
CLEAN_DESCRIPTORS = {"StudyDescription", "SeriesDescription", "ProtocolName"}
NO_DATE_OPTION = {"PatientBirthDate", "PatientBirthTime"}
COLUMNS = ("tag", "keyword", "name", "vr", "basic", "rtn_long_modif_dates", "clean_desc",
           "inferred")  # fmt: skip


def rows(source: str) -> list[tuple[str, ...]]:
    out = []
    blocks = re.finditer(r"^(\w+_TAGS) = \[(.*?)^\]", source, re.S | re.M)
    for block in blocks:
        action = ACTIONS.get(block.group(1))
        if action is None:
            continue
        body = block.group(2)
        for match in re.finditer(r"\(\s*([0-9xA-Fa-f, \n]+?)\s*,?\s*\),?\s*#\s*(.+)", body):
            numbers = [int(n, 16) for n in re.findall(r"0x[0-9A-Fa-f]+", match.group(1))]
            name = match.group(2).strip()
            if len(numbers) == 2:
                group, element = numbers
                tag = f"({group:04X},{element:04X})"
                keyword = keyword_for_tag((group << 16) | element) or ""
                vr = dictionary_VR((group << 16) | element) if keyword else ""
            else:  # (group, element, group mask, element mask): a repeating group
                group, element, _, emask = numbers
                element_text = f"{element:04X}" if emask else "xxxx"
                tag = f"({group >> 8:02X}xx,{element_text})"
                keyword, vr = "", ""
                if emask == 0xFFFF:
                    keyword = keyword_for_tag((group << 16) | element) or ""
                    vr = dictionary_VR((group << 16) | element) if keyword else ""
            dates = "C" if vr in ("DA", "DT", "TM") and keyword not in NO_DATE_OPTION else ""
            clean = "C" if keyword in CLEAN_DESCRIPTORS else ""
            inferred = ",".join(
                col
                for col, cell in (("rtn_long_modif_dates", dates), ("clean_desc", clean))
                if cell
            )
            out.append((tag, keyword, name, vr, action, dates, clean, inferred))
    out.sort(key=lambda r: r[0].replace("x", "0"))
    return out


def main() -> None:
    source_path, edition = Path(sys.argv[1]), sys.argv[2]
    table = rows(source_path.read_text(encoding="utf-8"))
    header = [
        f"# DICOM PS3.15 {edition} Annex E, Table E.1-1 (Application Level Confidentiality",
        "# Profile Attributes): every row, with its Basic Profile action and the two option",
        "# columns lumbar uses. Source of tags, names and basic actions: the BSD-licensed",
        f"# dicom-anonymizer 2.1.0 wheel, dicomfields_{edition}.py. The option columns are not",
        "# in that source: they follow a rule (scripts/confidentiality_table.py) and every",
        "# such cell is named in `inferred`. Keyword and VR come from pydicom's dictionary.",
        f"# edition: {edition}",
    ]
    lines = header + ["\t".join(COLUMNS)] + ["\t".join(r) for r in table]
    target = Path(__file__).resolve().parents[1] / "src/lumbar/ingest/confidentiality_profile.tsv"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(table)} rows -> {target}")


if __name__ == "__main__":
    main()
