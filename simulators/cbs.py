"""CBS simulator: a core banking system implementing `cbs-contract.openapi.yaml`, with a small admin API.

Run: `python -m simulators.cbs --host 127.0.0.1 --port 3005 --data-dir DIR [--seed FILE]`.

A new database is seeded with two active USD accounts of 1000000.00 (payer MSISDN 25644444444, payee MSISDN
25622222222), or with the accounts of `--seed FILE` (a JSON list shaped as `POST /_sim/accounts` bodies).

Test-only admin API under `/_sim` (not part of the contract; faults and counters live in memory, a restart
clears them):

* `POST /_sim/accounts`, `PATCH /_sim/accounts/{accountId}` - create/replace an account, set its status.
* `PUT /_sim/faults/{operation}` body `{"mode": "down"|"slow"|"refuse", "delayS": 0.0, "code": "...",
  "httpStatus": 409, "times": null}` - `down` answers 503 and does nothing; `slow` waits `delayS` then does the
  operation once (even if the caller went away); `refuse` answers `httpStatus` with `{"code", "message"}` and does
  nothing; `times` = how many calls it applies to (null: until cleared). Operations: resolve_party (GET /parties),
  hold, commit_hold, release_hold, credit_check, reserve_credit, commit_credit, release_credit,
  list_holds (GET /holds).
* `GET /_sim/faults` - the active faults (with `remaining`); `DELETE /_sim/faults` clears all,
  `DELETE /_sim/faults/{operation}` one.
* `GET /_sim/calls` - calls per operation since start (faulted ones included), `DELETE /_sim/calls` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from simulators._common import (
    BadRequest,
    answer_invalid_requests,
    configure_logging,
    read_model,
    run_server,
    simulator_app,
)
from simulators.cbs_holds import encode_cursor, open_holds_query
from simulators.cbs_ledger import CbsError, Ledger
from simulators.cbs_models import (
    FAULT_OPERATIONS,
    SUPPORTED_ID_TYPES,
    AccountStatusUpdate,
    AccountUpsert,
    CreditCheck,
    CreditCreate,
    FaultSpec,
    HoldCreate,
)

__all__ = ["DEFAULT_SEED", "create_app", "main"]

DEFAULT_SEED: list[dict[str, Any]] = [
    {
        "accountId": "acc-0001",
        "currency": "USD",
        "status": "active",
        "balance": "1000000.00",
        "holder": {"displayName": "Payer One", "firstName": "Payer", "lastName": "One", "dateOfBirth": "1980-01-01"},
        "parties": [{"idType": "MSISDN", "idValue": "25644444444"}],
    },
    {
        "accountId": "acc-0002",
        "currency": "USD",
        "status": "active",
        "balance": "1000000.00",
        "holder": {
            "displayName": "Fake Core Payee",
            "firstName": "Fake",
            "middleName": "Core",
            "lastName": "Payee",
            "dateOfBirth": "1990-01-01",
        },
        "parties": [{"idType": "MSISDN", "idValue": "25622222222"}],
    },
]


class _Down(Exception):
    """A `down` fault: the CBS is unavailable (503), nothing happened."""


class Faults:
    """Per-operation fault switch and call counters (in memory). `run` wraps each faultable operation."""

    def __init__(self) -> None:
        self._faults: dict[str, FaultSpec] = {}
        self._remaining: dict[str, int | None] = {}
        self.calls: dict[str, int] = dict.fromkeys(FAULT_OPERATIONS, 0)
        self._in_flight: set[asyncio.Task[Any]] = set()

    @staticmethod
    def check(operation: str) -> None:
        if operation not in FAULT_OPERATIONS:
            raise BadRequest("unknown operation; known: " + ", ".join(FAULT_OPERATIONS))

    def set(self, operation: str, spec: FaultSpec) -> None:
        self._faults[operation] = spec
        self._remaining[operation] = spec.times

    def clear(self, operation: str | None = None) -> None:
        if operation is None:
            self._faults.clear()
            self._remaining.clear()
        else:
            self._faults.pop(operation, None)
            self._remaining.pop(operation, None)

    def describe(self) -> dict[str, Any]:
        return {
            op: {**json.loads(spec.model_dump_json(by_alias=True)), "remaining": self._remaining[op]}
            for op, spec in self._faults.items()
        }

    def _take(self, operation: str) -> FaultSpec | None:
        """The fault for this call, if any, counting it against `times`."""
        spec = self._faults.get(operation)
        if spec is None:
            return None
        remaining = self._remaining[operation]
        if remaining is not None:
            if remaining <= 1:
                self.clear(operation)
            else:
                self._remaining[operation] = remaining - 1
        return spec

    async def run(self, operation: str, action: Callable[[], Any]) -> Any:
        self.calls[operation] += 1
        spec = self._take(operation)
        if spec is None:
            return action()
        if spec.mode == "down":
            raise _Down
        if spec.mode == "refuse":
            raise CbsError(spec.http_status, spec.code or "refused", "refused by a simulator fault")

        async def slow() -> Any:
            await asyncio.sleep(spec.delay_s)
            return action()

        # Shielded: a caller that disconnects (or a worker killed mid-call) does not stop the operation.
        task = asyncio.ensure_future(slow())
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)


def _seed(ledger: Ledger, seed: list[dict[str, Any]]) -> None:
    for item in seed:
        ledger.upsert_account(AccountUpsert.model_validate(item))


def create_app(data_dir: Path, seed_file: Path | None = None) -> FastAPI:
    """Build the app on a SQLite ledger in `data_dir`; seeds only a new (empty) ledger."""
    logger = logging.getLogger("simulators.cbs")
    ledger = Ledger(Path(data_dir))
    faults = Faults()
    if ledger.is_empty():
        seed = json.loads(Path(seed_file).read_text()) if seed_file else DEFAULT_SEED
        _seed(ledger, seed)
        logger.info("seeded %d accounts", len(seed))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("CBS simulator ready")
        yield
        ledger.close()
        logger.info("CBS simulator stopped")

    app = simulator_app("mojaflow CBS simulator", logger, lifespan)
    answer_invalid_requests(app)

    @app.exception_handler(CbsError)
    async def _on_refusal(_: Request, exc: CbsError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(_Down)
    async def _on_down(_: Request, exc: _Down) -> JSONResponse:
        return JSONResponse({"code": "unavailable", "message": "simulated outage"}, status_code=503)

    def created(body: dict[str, Any], is_new: bool) -> JSONResponse:
        return JSONResponse(body, status_code=201 if is_new else 200)

    async def lookup(id_type: str, id_value: str, id_sub_value: str | None) -> dict[str, Any]:
        if id_type not in SUPPORTED_ID_TYPES:
            raise CbsError(400, "unsupported_id_type", "supported id types: " + ", ".join(SUPPORTED_ID_TYPES))
        return await faults.run("resolve_party", lambda: ledger.party(id_type, id_value, id_sub_value))

    @app.get("/parties/{idType}/{idValue}")
    async def get_party(idType: str, idValue: str) -> dict[str, Any]:  # noqa: N803 - contract names
        return await lookup(idType, idValue, None)

    @app.get("/parties/{idType}/{idValue}/{idSubValue}")
    async def get_party_sub(idType: str, idValue: str, idSubValue: str) -> dict[str, Any]:  # noqa: N803
        return await lookup(idType, idValue, idSubValue)

    @app.get("/accounts/{accountId}")
    async def get_account(accountId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.account(accountId)

    @app.post("/holds")
    async def post_hold(request: Request) -> JSONResponse:
        body = await read_model(request, HoldCreate)
        return await faults.run(
            "hold",
            lambda: created(*ledger.open_entry("hold", body.hold_key, body.account_id, body.amount, body.currency)),
        )

    @app.get("/holds")
    async def list_holds(request: Request) -> dict[str, Any]:
        query = open_holds_query(request.query_params)
        holds, more = await faults.run(
            "list_holds",
            lambda: ledger.open_holds(created_before=query.created_before, after=query.after, limit=query.limit),
        )
        return {"holds": holds, "nextCursor": encode_cursor(more) if more else None}

    @app.get("/holds/{holdId}")
    async def get_hold(holdId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.get_entry("hold", holdId)

    @app.post("/holds/{holdId}/commit")
    async def commit_hold(holdId: str) -> dict[str, Any]:  # noqa: N803
        return await faults.run("commit_hold", lambda: ledger.finish_entry("hold", holdId, "commit"))

    @app.post("/holds/{holdId}/release")
    async def release_hold(holdId: str) -> dict[str, Any]:  # noqa: N803
        return await faults.run("release_hold", lambda: ledger.finish_entry("hold", holdId, "release"))

    @app.post("/credit-checks")
    async def post_credit_check(request: Request) -> dict[str, Any]:
        body = await read_model(request, CreditCheck)

        def check() -> dict[str, Any]:
            ledger.check_credit(body.account_id, body.amount, body.currency)
            return {"accountId": body.account_id, "allowed": True}

        return await faults.run("credit_check", check)

    @app.post("/credits")
    async def post_credit(request: Request) -> JSONResponse:
        body = await read_model(request, CreditCreate)
        return await faults.run(
            "reserve_credit",
            lambda: created(
                *ledger.open_entry("credit", body.reservation_key, body.account_id, body.amount, body.currency)
            ),
        )

    @app.get("/credits/{reservationId}")
    async def get_credit(reservationId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.get_entry("credit", reservationId)

    @app.post("/credits/{reservationId}/commit")
    async def commit_credit(reservationId: str) -> dict[str, Any]:  # noqa: N803
        return await faults.run("commit_credit", lambda: ledger.finish_entry("credit", reservationId, "commit"))

    @app.post("/credits/{reservationId}/release")
    async def release_credit(reservationId: str) -> dict[str, Any]:  # noqa: N803
        return await faults.run("release_credit", lambda: ledger.finish_entry("credit", reservationId, "release"))

    @app.post("/_sim/accounts")
    async def sim_upsert_account(request: Request) -> JSONResponse:
        body = await read_model(request, AccountUpsert)
        return created(*ledger.upsert_account(body))

    @app.patch("/_sim/accounts/{accountId}")
    async def sim_set_status(accountId: str, request: Request) -> dict[str, Any]:  # noqa: N803
        body = await read_model(request, AccountStatusUpdate)
        return ledger.set_status(accountId, body.status)

    @app.put("/_sim/faults/{operation}")
    async def sim_put_fault(operation: str, request: Request) -> dict[str, Any]:
        faults.check(operation)
        spec = await read_model(request, FaultSpec)
        faults.set(operation, spec)
        logger.info("fault set on %s: %s", operation, spec.mode)
        return faults.describe()[operation]

    @app.get("/_sim/faults")
    async def sim_get_faults() -> dict[str, Any]:
        return faults.describe()

    @app.delete("/_sim/faults")
    async def sim_clear_faults() -> Response:
        faults.clear()
        return Response(status_code=204)

    @app.delete("/_sim/faults/{operation}")
    async def sim_clear_fault(operation: str) -> Response:
        faults.check(operation)
        faults.clear(operation)
        return Response(status_code=204)

    @app.get("/_sim/calls")
    async def sim_calls() -> dict[str, int]:
        return dict(faults.calls)

    @app.delete("/_sim/calls")
    async def sim_reset_calls() -> Response:
        faults.calls = dict.fromkeys(FAULT_OPERATIONS, 0)
        return Response(status_code=204)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.cbs", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3005)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=Path, default=None, help="JSON list of accounts for a new database")
    args = parser.parse_args(argv)
    configure_logging("simulators.cbs")
    run_server(create_app(args.data_dir, seed_file=args.seed), args.host, args.port)


if __name__ == "__main__":
    main()
