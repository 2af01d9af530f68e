"""The images the app shows (`lumbar.labeler.catalog`): pseudonyms only, inside the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.ingest_folder import write_ingest

from lumbar.errors import UserError
from lumbar.labeler.catalog import load_catalog


def test_html_in_catalog_ids_is_refused(tmp_path: Path) -> None:
    folder = write_ingest(tmp_path / "ingest", patients=("Pok1",))
    text = (folder / "images.csv").read_text().replace("Pok1,", "<b>x</b>,", 1)
    (folder / "images.csv").write_text(text)
    with pytest.raises(UserError, match="pseudonym"):
        load_catalog(folder)


def test_image_paths_outside_the_folder_are_refused(tmp_path: Path) -> None:
    folder = write_ingest(tmp_path / "ingest", patients=("Pok1",))
    secret = tmp_path / "secret.png"
    shutil.copy(folder / "Pok1" / "Pok1_1.png", secret)
    original = (folder / "images.csv").read_text()
    for bad in ("../secret.png", str(secret), "Pok1/../../secret.png"):
        (folder / "images.csv").write_text(original.replace("Pok1/Pok1_1.png", bad, 1))
        with pytest.raises(UserError, match="inside the images folder"):
            load_catalog(folder)
    # a symbolic link pointing out of the folder is refused too
    (folder / "Pok1" / "link.png").symlink_to(secret)
    (folder / "images.csv").write_text(original.replace("Pok1/Pok1_1.png", "Pok1/link.png", 1))
    with pytest.raises(UserError, match="inside the images folder"):
        load_catalog(folder)


def test_disc_markers_come_from_ingests_discs_csv(tmp_path: Path) -> None:
    folder = write_ingest(tmp_path / "ingest", patients=("Pok1", "Pok2"))
    assert load_catalog(folder).disc_markers == {}  # no discs.csv: markers start guessed
    (folder / "discs.csv").write_text(
        "patient_id,level,image,x,y,width,height,confidence,x_mm,y_mm,z_mm\n"
        "Pok1,L4-L5,Pok1/Pok1_3.png,23.5,35.5,48,48,0.9,0,1,2\n"
        "Pok1,T12-L1,Pok1/Pok1_3.png,23.5,3.5,48,48,0.9,0,1,2\n"
        "Pok1,L5-S1,Pok1/Pok1_3.png,23.5,60,48,48,0.9,0,1,2\n"  # outside the image
        "Pok2,L4-L5,Pok2/Pok2_1.png,10,10,48,48,0.9,0,1,2\n"  # not the sagittal image
        "Pok2,L3-L4,Pok2/Pok2_3.png,x,10,48,48,0.9,0,1,2\n"  # unreadable
    )
    markers = load_catalog(folder).disc_markers
    assert markers == {"Pok1": {"L4-L5": (0.5, 0.75), "T12-L1": (0.5, 4 / 48)}}
