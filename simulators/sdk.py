"""SDK simulator: the outbound API of `@mojaloop/sdk-scheme-adapter` 18.0.2 on a fake switch.

Run: `python -m simulators.sdk --host 127.0.0.1 --port 4001 --data-dir DIR [--party-timeout-s 30] [--expiry-s 60]
[--auto-accept none|party|quotes|both]` (manual acceptance by default; `--auto-accept` as the SDK's
AUTO_ACCEPT_PARTY / AUTO_ACCEPT_QUOTES, overridable per payer by the FaultSpec's `autoAccept`).

Magic values (as the reference Testing Toolkit rules): payee `25600000404` → 3204, payee `25600000408` → 504 after
`--party-timeout-s`, amount `500` → quote rejected 5101, amount `600` → transfer rejected 5105. `POST /accounts`
(identifier registration) has its own: see `simulators.sdk_accounts`.
Test-only admin API under `/_sim`: `PUT|DELETE /_sim/faults/{homeTransactionId}` (a FaultSpec, see
`simulators.sdk_models.FaultSpec`: delays (moneyStepDelayS, partyLookupDelayS, acceptPartyDelayS), moneyStepAnswer,
switchOutcome, prepareLost, prepareArrivesAfterS, getAnswer, notFoundAnswers, fulfilment, autoAccept, quote shapes),
`PUT /_sim/switch/{transferId}` (the switch's view of any transfer id), `GET /_sim/transfers/{transferId}`
(bookkeeping such as `prepareCount`), `GET /_sim/transfers` (`{"transfers": [...]}`: that of every transfer, oldest
first) and `GET /_sim/requests/{homeTransactionId}` (`partyLookups`, `partyAcceptances`: the `POST /transfers` and
`acceptParty` PUTs that arrived for that payer, counted before any delay, so also those still in flight).
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
from fastapi.responses import JSONResponse, Response

from simulators._common import (
    BadRequest,
    RedactedAccessLog,
    configure_logging,
    iso_now,
    read_json,
    read_model,
    run_server,
)
from simulators.sdk_accounts import AccountsBody, register_accounts
from simulators.sdk_models import FaultSpec, SwitchStateUpdate, TransferContinuation, TransferRequest
from simulators.sdk_store import SdkStore, StoredTransfer
from simulators.sdk_transfers import Answer, TransferEngine

__all__ = ["create_app", "main"]


def _answer(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status)
    return JSONResponse(answer.body, status_code=answer.status)


def _bad_request(message: str) -> JSONResponse:
    """The SDK's schema-validation error body: `{message, statusCode: 400}` (statusCode a number here)."""
    return JSONResponse({"message": message, "statusCode": 400}, status_code=400)


async def _read_continuation(request: Request) -> TransferContinuation:
    """18.0.2 allows `{"acceptParty": true}` or `{"acceptQuote": <bool>}`; `acceptParty: false` is a 400."""
    data = await read_json(request)
    if isinstance(data, dict) and data.get("acceptParty") is False:
        raise BadRequest("must be equal to one of the allowed values")
    body = await read_model(request, TransferContinuation)
    if (body.accept_party is None) == (body.accept_quote is None):
        raise BadRequest("must match exactly one schema in oneOf")
    return body


def create_app(
    data_dir: Path, party_timeout_s: float = 30.0, expiry_s: float = 60.0, auto_accept: str = "none"
) -> FastAPI:
    """Build the app on a SQLite store in `data_dir` (created if missing; existing state is kept)."""
    logger = logging.getLogger("simulators.sdk")
    store = SdkStore(Path(data_dir))
    engine = TransferEngine(store, party_timeout_s, expiry_s, auto_accept)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("SDK simulator ready (party timeout %.1f s)", party_timeout_s)
        yield
        store.close()
        logger.info("SDK simulator stopped")

    app = FastAPI(title="mojaflow SDK simulator", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(RedactedAccessLog, logger=logger)

    @app.exception_handler(BadRequest)
    async def _on_bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return _bad_request(f"Request failed validation: {exc.message}")

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _bad_request("Request failed validation")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def outbound_health() -> Response:  # the SDK outbound API's health route: 200, an empty body
        return Response(status_code=200)

    @app.post("/transfers")
    async def post_transfer(request: Request) -> Response:
        """Party lookup; a new transferId every time (the SDK's POST is not idempotent)."""
        return _answer(await engine.create(await read_model(request, TransferRequest)))

    @app.put("/transfers/{transferId}")
    async def put_transfer(transferId: str, request: Request) -> Response:  # noqa: N803 - the SDK's name
        """Accept the party (→ quote) or accept/reject the quote (accepting it is the money step)."""
        try:
            body = await _read_continuation(request)
        except BadRequest as exc:
            return _bad_request(exc.message)
        return _answer(await engine.resume(transferId, body, request.is_disconnected))

    @app.get("/transfers/{transferId}")
    async def get_transfer(transferId: str) -> Response:  # noqa: N803
        """Ask the switch: COMPLETED + fulfil.body.transferState, 3208 if the switch does not know it."""
        return _answer(await engine.get(transferId))

    @app.post("/accounts")
    async def post_accounts(request: Request) -> Response:
        """Identifier registration at the ALS (`simulators.sdk_accounts`)."""
        raw = await read_json(request)
        body = await read_model(request, AccountsBody)
        return _answer(await register_accounts(body, raw, party_timeout_s))

    @app.put("/_sim/faults/{homeTransactionId}")
    async def put_faults(homeTransactionId: str, request: Request) -> dict[str, Any]:  # noqa: N803
        spec = await read_model(request, FaultSpec)
        store.set_faults(homeTransactionId, spec)
        logger.info("faults set")
        return json.loads(spec.model_dump_json(by_alias=True))

    @app.delete("/_sim/faults/{homeTransactionId}")
    async def delete_faults(homeTransactionId: str) -> Response:  # noqa: N803
        store.delete_faults(homeTransactionId)
        return Response(status_code=204)

    @app.put("/_sim/switch/{transferId}")
    async def put_switch(transferId: str, request: Request) -> dict[str, str]:  # noqa: N803
        update = await read_model(request, SwitchStateUpdate)
        stored = store.get_transfer(transferId)  # a transfer we prepared reveals its fulfilment when committed
        store.set_switch(transferId, update.transfer_state, iso_now(), stored.fulfilment if stored else None)
        return {"transferId": transferId, "transferState": update.transfer_state}

    @app.get("/_sim/transfers/{transferId}")
    async def sim_transfer(transferId: str) -> Response:  # noqa: N803
        stored = store.get_transfer(transferId)
        if stored is None:
            return JSONResponse({"message": "unknown transfer", "statusCode": 404}, status_code=404)
        entry = store.get_switch(transferId)
        return JSONResponse(_bookkeeping(stored, entry.transfer_state if entry else None))

    @app.get("/_sim/transfers")
    async def sim_transfers() -> dict[str, Any]:
        return {"transfers": [_bookkeeping(stored, state) for stored, state in store.list_transfers()]}

    @app.get("/_sim/requests/{homeTransactionId}")
    async def sim_requests(homeTransactionId: str) -> dict[str, Any]:  # noqa: N803
        return {"homeTransactionId": homeTransactionId, **store.arrivals(homeTransactionId)}

    return app


def _bookkeeping(stored: StoredTransfer, switch_state: str | None) -> dict[str, Any]:
    return {
        "transferId": stored.transfer_id,
        "homeTransactionId": stored.home_transaction_id,
        "currentState": stored.record.get("currentState"),
        "prepareCount": stored.prepare_count,
        "switchState": switch_state,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.sdk", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4001)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--party-timeout-s", type=float, default=30.0)
    parser.add_argument("--expiry-s", type=float, default=60.0, help="the SDK's EXPIRY_SECONDS (prepare expiration)")
    parser.add_argument(
        "--auto-accept",
        choices=["none", "party", "quotes", "both"],
        default="none",
        help="AUTO_ACCEPT_PARTY / AUTO_ACCEPT_QUOTES for every transfer (a FaultSpec's autoAccept wins)",
    )
    args = parser.parse_args(argv)
    configure_logging("simulators.sdk")
    app = create_app(
        args.data_dir, party_timeout_s=args.party_timeout_s, expiry_s=args.expiry_s, auto_accept=args.auto_accept
    )
    run_server(app, args.host, args.port)


if __name__ == "__main__":
    main()
