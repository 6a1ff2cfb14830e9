"""The sweeper's tables (on the app database's `metadata`; migration 0004; read and written by
mojaflow/sweeper_store.py).

* `sweep_runs`: one row per sweep: when, what triggered it, how many holds and transfers each check looked at,
  whether it stopped at its bound or could not run (and why), how many findings.
* `sweep_findings`: its findings (mojaflow/sweeper.py `Finding`): ids, states, Temporal status, amount, times;
  never a name, party id or account.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table

from mojaflow.database import metadata

__all__ = ["sweep_findings", "sweep_runs"]

sweep_runs = Table(
    "sweep_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("trigger", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("holds_checked", Integer, nullable=False),
    Column("holds_truncated", Boolean, nullable=False),
    Column("holds_error", String(200)),
    Column("transfers_checked", Integer, nullable=False),
    Column("transfers_truncated", Boolean, nullable=False),
    Column("transfers_error", String(200)),
    Column("findings", Integer, nullable=False),
    Index("ix_sweep_runs_finished", "finished_at"),
)

sweep_findings = Table(
    "sweep_findings",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("transfer_id", String(64)),
    Column("hold_id", String(128)),
    Column("state", String(40)),
    Column("error_code", String(64)),
    Column("workflow_status", String(32)),
    Column("amount", String(32)),
    Column("currency", String(3)),
    Column("since", DateTime(timezone=True), nullable=False),
)
