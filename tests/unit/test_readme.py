"""The README stays true: every setting is listed with its variable name."""

from __future__ import annotations

from pathlib import Path

from mojaflow.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [name for name in Settings.model_fields if f"`MOJAFLOW_{name.upper()}`" not in README]
    assert missing == []
