"""The worklist and patient pages (`lumbar.labeler.worklist`): progress, next patient, the
viewer's data, and images served only from the catalog."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers.ingest_folder import write_ingest

from lumbar.labeler.app import create_app
from lumbar.labeler.catalog import load_catalog

from .conftest import PATIENTS, login, new_client, save

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


FULL = {"disc_state": 3, "herniation": 2, "scs": 1, "rfs": 0, "lfs": 2}


def test_worklist_progress_filter_and_next(rad1) -> None:  # type: ignore[no-untyped-def]
    client, csrf = rad1
    page = client.get("/")
    assert page.status_code == 200
    assert all(p in page.text for p in PATIENTS)
    for level in LEVELS:
        assert save(client, csrf, level, FULL).status_code == 200
    page = client.get("/")
    assert "5/5" in page.text
    todo = client.get("/?filter=todo").text
    assert PATIENTS[0] not in todo and PATIENTS[1] in todo
    # "next patient" skips what I finished
    assert client.get("/next").headers["location"] == f"/patients/{PATIENTS[1]}"
    after = client.get(f"/next?after={PATIENTS[1]}").headers["location"]
    assert after == f"/patients/{PATIENTS[2]}"


def test_patient_page_has_images_forms_and_token(rad1) -> None:  # type: ignore[no-untyped-def]
    client, _ = rad1
    page = client.get(f"/patients/{PATIENTS[0]}")
    assert page.status_code == 200
    for i in range(8):
        assert f"/patients/{PATIENTS[0]}/images/{i}" in page.text
    assert "Sagittal T2" in page.text and "Axial T2 L5-S1" in page.text
    assert "Sequestration" in page.text  # Table 3 names come from lumbar.grading
    assert "/static/viewer.js" in page.text
    assert client.get("/static/viewer.js").status_code == 200
    assert '"disc_markers": {}' in page.text  # the fixture's ingest localised no discs


def test_image_urls_cannot_traverse(rad1) -> None:  # type: ignore[no-untyped-def]
    client, _ = rad1
    for url in (
        f"/patients/{PATIENTS[0]}/images/../../../../etc/passwd",
        f"/patients/{PATIENTS[0]}/images/..%2F..%2Fimages.csv",
        f"/patients/{PATIENTS[0]}/images/99",
        f"/patients/{PATIENTS[0]}/images/-1",
        "/patients/..%2F..%2Fetc/images/0",
    ):
        response = client.get(url)
        assert response.status_code in (303, 404), url
        assert b"root:" not in response.content
    assert client.get(f"/patients/{PATIENTS[0]}/images/0").headers["content-type"] == "image/png"


SECRET = b"0123456789abcdef-the-pseudonym-secret\n"


def test_image_swapped_after_startup_is_never_served(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 defect 5: a catalogued image replaced by a link to the ingest's secret after
    start-up was served (the per-request check only asked "inside the folder, a file?")."""
    folder = write_ingest(tmp_path / "ingest")
    secret = folder / ".lumbar-secret"
    secret.write_bytes(SECRET)
    catalog = load_catalog(folder)
    client = new_client(create_app(store, catalog))
    login(client, "rad1")
    url = f"/patients/{PATIENTS[0]}/images/0"
    image = catalog.image(PATIENTS[0], 0)
    assert image is not None
    target = image.path
    assert client.get(url).content == target.read_bytes()

    def refused() -> None:
        response = client.get(url)
        assert response.status_code == 404 and SECRET not in response.content

    target.unlink()
    target.symlink_to(secret)  # a link to the secret, inside the folder
    refused()
    target.unlink()
    target.symlink_to(os.path.relpath(secret, target.parent))
    refused()
    target.unlink()
    os.link(secret, target)  # a hard link: a regular file, but not the catalogued one
    refused()
    decoy = folder / "decoy"  # the patient's folder swapped for a link to another folder
    decoy.mkdir()
    shutil.copy(secret, decoy / target.name)
    moved = folder / "moved"
    target.parent.rename(moved)
    target.parent.symlink_to(decoy, target_is_directory=True)
    refused()
    # the untouched images are still served
    other = catalog.image(PATIENTS[1], 0)
    assert other is not None
    assert client.get(f"/patients/{PATIENTS[1]}/images/0").content == other.path.read_bytes()


def test_catalog_refuses_images_that_are_not_regular_files(tmp_path: Path) -> None:
    import pytest

    from lumbar.errors import UserError

    folder = write_ingest(tmp_path / "ingest", patients=(PATIENTS[0],))
    target = folder / PATIENTS[0] / f"{PATIENTS[0]}_3.png"
    target.unlink()
    target.mkdir()
    with pytest.raises(UserError, match="regular"):
        load_catalog(folder)


def test_patient_page_places_level_markers_on_localised_discs(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json
    import re

    folder = write_ingest(tmp_path / "ingest")
    pid = PATIENTS[0]
    (folder / "discs.csv").write_text(
        "patient_id,level,image,x,y,width,height,confidence,x_mm,y_mm,z_mm\n"
        f"{pid},L4-L5,{pid}/{pid}_3.png,23.5,35.5,48,48,0.97,0,1,2\n"
    )
    client = new_client(create_app(store, load_catalog(folder)))
    login(client, "rad1")
    page = client.get(f"/patients/{pid}").text
    data = json.loads(re.search(r'id="fala-data">(.*?)</script>', page, re.S).group(1))
    assert data["disc_markers"] == {"L4-L5": {"x": 0.5, "y": 0.75}}
    other = client.get(f"/patients/{PATIENTS[1]}").text
    assert '"disc_markers": {}' in other  # no localised disc: markers start at guessed heights
