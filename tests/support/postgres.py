"""A throwaway PostgreSQL server for tests: `initdb` in a temp dir, started on a free port, stopped by pg_ctl.

Uses the machine's PostgreSQL binaries (Debian's `postgresql` package; `.ci/run` installs it if missing). As root,
the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.process import free_port

__all__ = ["PostgresServer", "find_pg_bin"]


def find_pg_bin() -> Path | None:
    for candidate in [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)]:
        if candidate:
            return Path(candidate).resolve().parent
    return None


class PostgresServer:
    """`directory=None`: a new one in the system temp dir (pytest's own is private to root, not to `postgres`)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="mojaflow-pg-"))
        self.port = free_port()
        self._bin = find_pg_bin()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://mojaflow@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        assert self._bin is not None
        command = [str(self._bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> PostgresServer:
        if self._bin is None:
            raise RuntimeError("PostgreSQL is not installed (initdb not found): apt-get install postgresql")
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        data = str(self.directory / "data")
        self._run("initdb", "-D", data, "-A", "trust", "-U", "mojaflow", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", data, "-o", options, "-l", str(self.directory / "server.log"), "-w", "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database for one test of a fixture parametrized `sqlite` / `postgresql`: a file in `tmp_path`,
    or a database of its own on the module's `postgres` server (fixture in tests/conftest.py)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    server: str = request.getfixturevalue("postgres")
    name = f"t{uuid.uuid4().hex[:16]}"
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return f"{server.rsplit('/', 1)[0]}/{name}"
