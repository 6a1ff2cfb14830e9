"""RFC 7240 `Prefer`: `wait=N` (seconds, capped at 60) and `respond-async`. Unknown preferences are ignored."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_WAIT_S", "WaitPreference", "parse_prefer"]

MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class WaitPreference:
    wait_s: float
    applied: str | None  # for the Preference-Applied header


def parse_prefer(header: str | None, default_wait_s: float) -> WaitPreference:
    respond_async = False
    wait: float | None = None
    for item in (header or "").split(","):
        token, _, value = item.strip().partition("=")
        token = token.strip().lower()
        if token == "respond-async":
            respond_async = True
        elif token == "wait":
            try:
                wait = max(0.0, min(float(value.strip().strip('"')), MAX_WAIT_S))
            except ValueError:
                continue
    if respond_async:
        return WaitPreference(0.0, "respond-async")
    if wait is not None:
        return WaitPreference(wait, f"wait={wait:g}")
    return WaitPreference(min(default_wait_s, MAX_WAIT_S), None)
