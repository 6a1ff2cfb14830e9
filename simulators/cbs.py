"""CBS simulator: a core banking system implementing `cbs-contract.openapi.yaml`, with a small admin API.

Run: `python -m simulators.cbs --host 127.0.0.1 --port 3005 --data-dir DIR [--seed FILE]`.

A new database is seeded with two active USD accounts of 1000000.00 (payer MSISDN 25644444444, payee MSISDN
25622222222), or with the accounts of `--seed FILE` (a JSON list shaped as `POST /_sim/accounts` bodies).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from simulators._common import BadRequest, RedactedAccessLog, configure_logging, read_model, run_server
from simulators.cbs_ledger import CbsError, Ledger
from simulators.cbs_models import (
    SUPPORTED_ID_TYPES,
    AccountStatusUpdate,
    AccountUpsert,
    CreditCheck,
    CreditCreate,
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


def _seed(ledger: Ledger, seed: list[dict[str, Any]]) -> None:
    for item in seed:
        ledger.upsert_account(AccountUpsert.model_validate(item))


def create_app(data_dir: Path, seed_file: Path | None = None) -> FastAPI:
    """Build the app on a SQLite ledger in `data_dir`; seeds only a new (empty) ledger."""
    logger = logging.getLogger("simulators.cbs")
    ledger = Ledger(Path(data_dir))
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

    app = FastAPI(title="mojaflow CBS simulator", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(RedactedAccessLog, logger=logger)

    @app.exception_handler(CbsError)
    async def _on_refusal(_: Request, exc: CbsError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(BadRequest)
    async def _on_bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"code": "invalid_request", "message": exc.message}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"code": "invalid_request", "message": "invalid request"}, status_code=400)

    def created(body: dict[str, Any], is_new: bool) -> JSONResponse:
        return JSONResponse(body, status_code=201 if is_new else 200)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def lookup(id_type: str, id_value: str, id_sub_value: str | None) -> dict[str, Any]:
        if id_type not in SUPPORTED_ID_TYPES:
            raise CbsError(400, "unsupported_id_type", "supported id types: " + ", ".join(SUPPORTED_ID_TYPES))
        return ledger.party(id_type, id_value, id_sub_value)

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
        return created(*ledger.open_entry("hold", body.hold_key, body.account_id, body.amount, body.currency))

    @app.get("/holds/{holdId}")
    async def get_hold(holdId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.get_entry("hold", holdId)

    @app.post("/holds/{holdId}/commit")
    async def commit_hold(holdId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.finish_entry("hold", holdId, "commit")

    @app.post("/holds/{holdId}/release")
    async def release_hold(holdId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.finish_entry("hold", holdId, "release")

    @app.post("/credit-checks")
    async def post_credit_check(request: Request) -> dict[str, Any]:
        body = await read_model(request, CreditCheck)
        ledger.check_credit(body.account_id, body.amount, body.currency)
        return {"accountId": body.account_id, "allowed": True}

    @app.post("/credits")
    async def post_credit(request: Request) -> JSONResponse:
        body = await read_model(request, CreditCreate)
        return created(*ledger.open_entry("credit", body.reservation_key, body.account_id, body.amount, body.currency))

    @app.get("/credits/{reservationId}")
    async def get_credit(reservationId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.get_entry("credit", reservationId)

    @app.post("/credits/{reservationId}/commit")
    async def commit_credit(reservationId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.finish_entry("credit", reservationId, "commit")

    @app.post("/credits/{reservationId}/release")
    async def release_credit(reservationId: str) -> dict[str, Any]:  # noqa: N803
        return ledger.finish_entry("credit", reservationId, "release")

    @app.post("/_sim/accounts")
    async def sim_upsert_account(request: Request) -> JSONResponse:
        body = await read_model(request, AccountUpsert)
        return created(*ledger.upsert_account(body))

    @app.patch("/_sim/accounts/{accountId}")
    async def sim_set_status(accountId: str, request: Request) -> dict[str, Any]:  # noqa: N803
        body = await read_model(request, AccountStatusUpdate)
        return ledger.set_status(accountId, body.status)

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
