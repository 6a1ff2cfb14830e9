"""The README stays true: every setting is listed with its variable name."""

from __future__ import annotations

from pathlib import Path

from mojaflow.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    # A setting under another project's standard name (OpenTelemetry's OTEL_*) is listed under that name
    names = [
        field.validation_alias if isinstance(field.validation_alias, str) else f"MOJAFLOW_{name.upper()}"
        for name, field in Settings.model_fields.items()
    ]
    missing = [name for name in names if f"`{name}`" not in README]
    assert missing == []
