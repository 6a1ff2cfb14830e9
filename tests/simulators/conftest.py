"""Fixtures: each simulator runs once per test module as a real subprocess on a free port and a fresh data dir."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:  # `tests.support`, `tests.simulators` and `simulators` importable under plain pytest
    sys.path.insert(0, _REPO_ROOT)

from tests.simulators._sims import ServerProcess, Sim, cbs_process, sdk_process  # noqa: E402

Builder = Callable[..., tuple[ServerProcess, str]]


@pytest.fixture(scope="module")
def sdk_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    base = tmp_path_factory.mktemp("sdk-sim")
    process, url = sdk_process(base / "data", base / "sdk.log")
    with process.start():
        yield Sim(url, process, base / "data")


@pytest.fixture(scope="module")
def cbs_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    base = tmp_path_factory.mktemp("cbs-sim")
    process, url = cbs_process(base / "data", base / "cbs.log")
    with process.start():
        yield Sim(url, process, base / "data")


@pytest.fixture
def make_sdk(tmp_path: Path) -> Iterator[Builder]:
    """Builder of extra SDK simulator processes (e.g. to restart on one data dir); all stopped at teardown."""
    started: list[ServerProcess] = []

    def build(data_dir: Path | None = None) -> tuple[ServerProcess, str]:
        process, url = sdk_process(data_dir or tmp_path / "sdk-data", tmp_path / f"sdk-{len(started)}.log")
        started.append(process)
        return process, url

    yield build
    for process in started:
        process.stop()


@pytest.fixture
def make_cbs(tmp_path: Path) -> Iterator[Builder]:
    """Builder of extra CBS simulator processes (restart, `--seed`); all stopped at teardown."""
    started: list[ServerProcess] = []

    def build(data_dir: Path | None = None, seed: Path | None = None) -> tuple[ServerProcess, str]:
        process, url = cbs_process(data_dir or tmp_path / "cbs-data", tmp_path / f"cbs-{len(started)}.log", seed=seed)
        started.append(process)
        return process, url

    yield build
    for process in started:
        process.stop()
