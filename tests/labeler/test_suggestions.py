"""Model suggestions for the grading app (`lumbar.labeler.suggestions`): per level, marked as
the model's, cached; from a real model through the app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.tiny_run import make_tiny_run
from PIL import Image

from lumbar.inference.predict import Predictor
from lumbar.labeler.app import create_app
from lumbar.labeler.catalog import load_catalog
from lumbar.labeler.suggestions import Suggestions

from .conftest import PATIENTS, login, new_client


def _ingest_like(root: Path) -> Path:
    """A minimal ingest folder: images.csv + one patient's axial images and a sagittal one."""
    patient = "P0123456789ab"
    (root / patient).mkdir(parents=True)
    rows = ["patient_id,view,level,image,source_uid_hash"]
    rng = np.random.default_rng(0)
    for code, level in (("45", "L4-L5"), ("51", "L5-S1")):
        Image.fromarray(rng.integers(0, 255, (120, 160), dtype=np.uint8)).save(
            root / patient / f"{patient}_{code}.png"
        )
        rows.append(f"{patient},axial_t2,{level},{patient}/{patient}_{code}.png,x{code}")
    Image.fromarray(np.zeros((120, 160), dtype=np.uint8)).save(root / patient / f"{patient}_3.png")
    rows.append(f"{patient},sagittal_t2,,{patient}/{patient}_3.png,x3")
    (root / "images.csv").write_text("\n".join(rows) + "\n")
    return root


def test_suggestions_per_level(tmp_path: Path) -> None:
    catalog = load_catalog(_ingest_like(tmp_path / "ingest"))
    predictor = Predictor.load(make_tiny_run(tmp_path / "run", roi="center:0.8"))
    suggestions = Suggestions(predictor, catalog)
    got = suggestions.for_patient("P0123456789ab")
    assert set(got) == {"L4-L5", "L5-S1"}
    for item in got.values():
        assert item["source"] == "model" and item["model"] == "run"
        assert item["suggested"] in ("normal", "abnormal")
        assert sum(item["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert item["probability"] == max(item["probabilities"].values())
    assert suggestions.for_patient("P0123456789ab") is got  # cached
    assert suggestions.for_patient("Pffffffffffff") == {}


def test_suggestions_from_a_real_model(store, ingest_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    catalog = load_catalog(ingest_dir)
    suggestions = Suggestions(Predictor.load(make_tiny_run(tmp_path / "run")), catalog)
    client = new_client(create_app(store, catalog, suggestions=suggestions))
    login(client, "rad1")
    body = client.get(f"/api/patients/{PATIENTS[1]}/suggestions").json()["suggestions"]
    assert len(body) == 5
    assert all(
        s["source"] == "model" and s["suggested"] in ("normal", "abnormal") for s in body.values()
    )
