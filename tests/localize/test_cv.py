"""Localiser CV runs: a rerun into a run folder keeps the settings it was started with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lumbar.errors import UserError
from lumbar.localize.cv import cross_validate
from lumbar.localize.train import TrainSettings, settings_dict


def test_a_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = json.dumps(settings_dict(TrainSettings(steps=800)), indent=2)
    (run / "config.json").write_text(config)
    refused = f"^{re.escape(str(run))} was started with other settings; use a new --out$"
    with pytest.raises(UserError, match=refused):
        cross_validate(tmp_path / "no-data", run, TrainSettings(steps=10), log=lambda _: None)
    assert (run / "config.json").read_text() == config  # left as it was
    with pytest.raises(UserError, match="not a spider-sagittal folder"):  # the same: past the check
        cross_validate(tmp_path / "no-data", run, TrainSettings(steps=800), log=lambda _: None)


def test_an_unreadable_config_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"config\.json is not readable; use a new --out"):
        cross_validate(tmp_path / "no-data", run, TrainSettings(), log=lambda _: None)
