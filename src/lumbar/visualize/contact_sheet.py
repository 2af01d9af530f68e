"""A contact sheet of an ingest: one row per patient, the 8 selected images in the paper's order,
so a person can check the selection at a glance (`lumbar ingest --contact-sheet FILE`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lumbar.files import atomic_path

THUMB = 128
LABEL_HEIGHT = 14
PSEUDONYM_WIDTH = 120


def write_contact_sheet(
    images: Sequence[tuple[str, Path]], target: Path, max_patients: int = 12
) -> int:
    """Draw the images of the first `max_patients` patients into `target` (PNG).

    Args:
        images: (pseudonym, PNG) pairs; a file's name is the pseudonym and the paper's code
            (`P0123456789ab_45.png`: the L4-L5 axial image), which gives its column.

    Returns:
        The number of patients drawn.
    """
    from PIL import Image, ImageDraw

    patients: dict[str, list[Path]] = {}
    for patient, path in images:
        if patient in patients or len(patients) < max_patients:
            patients.setdefault(patient, []).append(Path(path))
    columns = ("_1", "_2", "_3", "_12", "_23", "_34", "_45", "_51")
    titles = ("myelo 1", "myelo 2", "sag T2", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    cell = THUMB + LABEL_HEIGHT
    sheet = Image.new(
        "L",
        (PSEUDONYM_WIDTH + THUMB * len(columns), LABEL_HEIGHT + cell * max(1, len(patients))),
        0,
    )
    draw = ImageDraw.Draw(sheet)
    for i, title in enumerate(titles):
        draw.text((PSEUDONYM_WIDTH + i * THUMB + 4, 1), title, fill=255)
    for r, (patient, items) in enumerate(sorted(patients.items())):
        y = LABEL_HEIGHT + r * cell
        draw.text((4, y + THUMB // 2), patient, fill=255)
        by_suffix = {path.stem[len(patient) :]: path for path in items}
        for c, suffix in enumerate(columns):
            found = by_suffix.get(suffix)
            x = PSEUDONYM_WIDTH + c * THUMB
            if found is None:
                draw.text((x + 4, y + THUMB // 2), "missing", fill=128)
                continue
            with Image.open(found) as image:
                thumb = image.convert("L")
                thumb.thumbnail((THUMB - 2, THUMB - 2))
                sheet.paste(thumb, (x + 1, y + 1))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG")
        tmp.chmod(0o644)
    return len(patients)
