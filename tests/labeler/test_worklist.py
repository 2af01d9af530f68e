"""The worklist and patient pages (`lumbar.labeler.worklist`): progress, next patient, the
viewer's data, and images served only from the catalog."""

from __future__ import annotations

from .conftest import PATIENTS, save

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
