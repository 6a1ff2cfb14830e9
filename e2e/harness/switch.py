"""The switch front: a small loopback service between the SDK and the Testing Toolkit that makes TTK's switch
answer `GET /transfers/{id}` as a real switch does, and that can hold a prepare on its way out of the SDK.

    python -m e2e.harness.switch --sdk-side PORT --ttk-side PORT --ttk-url URL --sdk-inbound-url URL [--jws-key PEM]

Every FSPIOP message between the SDK and TTK passes through it unchanged, both ways: the SDK's peer endpoints
(ALS, quotes, transfers) point at `--sdk-side`, TTK's callback endpoint at `--ttk-side`. It records what a switch
records of each transfer: the prepares it saw, the payee's fulfilment or error, the notification (PATCH) of an
inbound one. And it answers `GET /transfers/{id}` itself from that record, as central-ledger does: `COMMITTED`
with the fulfilment it released, `ABORTED` (rejected, or expired unanswered), `RESERVED` while undecided, or
`PUT /transfers/{id}/error` 3208 for an id it never saw. (TTK's own rules answer `COMMITTED` for any id, even
one it rejected or never saw: that hides exactly the cases reconciliation exists for.)

Its test controls, on the SDK side under `/_switch/`:
  GET  /_switch/transfers/{id}          what it recorded (404: never seen; `queries`: the 3208s it answered)
  POST /_switch/hold                    hold the next prepare (`POST /transfers`) instead of forwarding it
  GET  /_switch/held?wait_s=N           the held prepare's transfer id, as soon as there is one (404 after N s)
  POST /_switch/held/{id}?forward=...   true: send it on to TTK; false: reset the SDK's connection (never left)
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import re
import signal
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from e2e.harness.http11 import Answer, Cut, Http11Server, Request
from e2e.harness.jws import compact_json, fspiop_signature

__all__ = ["SwitchFront", "TransferRecord"]

# Not passed on: hop-by-hop headers, and the encoding (httpx hands us the body decoded)
_HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding"}
_TRANSFER = re.compile(r"^/transfers/([^/]+)(/error)?$")
_TRANSFER_JSON = "application/vnd.interoperability.transfers+json;version=1.0"
_SWITCH = "switch"


@dataclass
class TransferRecord:
    direction: str  # OUTBOUND: the SDK's prepare; INBOUND: TTK's prepare to the SDK
    prepares: int = 0
    state: str = "RECEIVED"  # RECEIVED, RESERVED, COMMITTED, ABORTED
    fulfilment: str | None = None
    expiration: str | None = None
    error_code: str | None = None
    queries: int = 0  # GET /transfers/{id} it answered
    signed: bool = False  # the prepare carried an FSPIOP-Signature (JWS on)

    def current(self) -> str:
        """Unanswered past its expiration: the switch's timeout has aborted it."""
        if self.state in ("RECEIVED", "RESERVED") and self.expiration and _parse_time(self.expiration) < _now():
            return "ABORTED"
        return self.state


class SwitchFront:
    def __init__(self, ttk_url: str, sdk_inbound_url: str, jws_key: Path | None = None) -> None:
        self.transfers: dict[str, TransferRecord] = {}
        self.unknown_queries: dict[str, int] = {}  # GETs it answered 3208, by transfer id
        self._ttk = _transparent_client(ttk_url)
        self._sdk = _transparent_client(sdk_inbound_url)
        self._jws_key = jws_key
        self._hold_next = False
        self._held: dict[str, asyncio.Future[bool]] = {}
        self._held_event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- from the SDK (to the switch) ------------------------------------------------------------------

    async def from_sdk(self, request: Request) -> Answer:
        if request.path.startswith("/_switch/"):
            return await self._control(request)
        if request.path == "/health":
            return _json(200, {"status": "OK"})
        match = _TRANSFER.match(request.path)
        if request.method == "GET" and match and not match.group(2):
            self._spawn(self._answer_get(match.group(1), request))
            return Answer(202)
        if request.method == "POST" and request.path == "/transfers":
            body = _body(request)
            transfer_id = str(body.get("transferId", ""))
            if self._hold_next:
                self._hold_next = False
                if not await self._held_until_released(transfer_id):
                    raise Cut  # the prepare never left the SDK's side
            record = self.transfers.setdefault(transfer_id, TransferRecord("OUTBOUND"))
            record.prepares += 1
            record.expiration = body.get("expiration")
            record.signed = request.header("fspiop-signature") is not None
        elif request.method == "PUT" and match:  # the SDK as payee answers TTK's prepare
            self._payee_answered(match.group(1), _body(request), error=bool(match.group(2)))
        return await _forward(self._ttk, request)

    async def _held_until_released(self, transfer_id: str) -> bool:
        decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._held[transfer_id] = decision
        self._held_event.set()
        try:
            return await decision
        finally:
            self._held.pop(transfer_id, None)

    # -- from TTK (to the SDK) -------------------------------------------------------------------------

    async def from_ttk(self, request: Request) -> Answer:
        match = _TRANSFER.match(request.path)
        if request.method == "POST" and request.path == "/transfers":  # TTK as payer FSP: an inbound prepare
            body = _body(request)
            record = self.transfers.setdefault(str(body.get("transferId", "")), TransferRecord("INBOUND"))
            record.prepares += 1
            record.expiration = body.get("expiration")
            record.signed = request.header("fspiop-signature") is not None
        elif request.method == "PUT" and match:  # TTK as payee answers the SDK's prepare
            self._payee_answered(match.group(1), _body(request), error=bool(match.group(2)))
        elif request.method == "PATCH" and match:  # the switch's final word to the payee (the SDK)
            notified = self.transfers.get(match.group(1))
            state = _body(request).get("transferState")
            if notified is not None and state in ("COMMITTED", "ABORTED"):
                notified.state = state
        return await _forward(self._sdk, request)

    def _payee_answered(self, transfer_id: str, body: dict[str, Any], *, error: bool) -> None:
        record = self.transfers.get(transfer_id)
        if record is None:  # an answer to a GET, or to a prepare we did not see: nothing to record
            return
        if error:
            record.state = "ABORTED"
            record.error_code = (body.get("errorInformation") or {}).get("errorCode")
            return
        record.fulfilment = body.get("fulfilment") or record.fulfilment
        if body.get("transferState") in ("RESERVED", "COMMITTED"):
            # A payee's COMMITTED commits the transfer. RESERVED (an SDK with RESERVE_NOTIFICATION) waits for
            # the switch's PATCH, which TTK's test template sends.
            record.state = body["transferState"]

    # -- the realistic answer to GET /transfers/{id} ---------------------------------------------------

    async def _answer_get(self, transfer_id: str, request: Request) -> None:
        record = self.transfers.get(transfer_id)
        destination = request.header("fspiop-source") or ""
        if record is None:
            self.unknown_queries[transfer_id] = self.unknown_queries.get(transfer_id, 0) + 1
            path = f"/transfers/{transfer_id}/error"
            body: dict[str, Any] = {
                "errorInformation": {"errorCode": "3208", "errorDescription": "Transfer ID not found"}
            }
        else:
            record.queries += 1
            path = f"/transfers/{transfer_id}"
            state = record.current()
            body = {"transferState": "RESERVED" if state == "RECEIVED" else state}
            if state in ("COMMITTED", "ABORTED"):
                body["completedTimestamp"] = _now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if state == "COMMITTED" and record.fulfilment:
                body["fulfilment"] = record.fulfilment
        await self._callback_to_sdk(path, body, destination)

    async def _callback_to_sdk(self, path: str, body: dict[str, Any], destination: str) -> None:
        content = compact_json(body)
        headers = {
            "Content-Type": _TRANSFER_JSON,
            "Accept": _TRANSFER_JSON,
            "Date": email.utils.formatdate(usegmt=True),
            "FSPIOP-Source": _SWITCH,
            "FSPIOP-Destination": destination,
        }
        if self._jws_key is not None:
            headers |= fspiop_signature(self._jws_key, "PUT", path, headers, content)
        try:
            await self._sdk.put(path, content=content, headers=headers)
        except httpx.HTTPError as error:  # the SDK may be stopped (SIGSTOP) or gone: it asks again
            print(f"switch front: callback {path} not delivered: {type(error).__name__}", flush=True)

    # -- test controls -----------------------------------------------------------------------------------

    async def _control(self, request: Request) -> Answer:
        path, query = request.path, _query(request.target)
        if request.method == "GET" and path.startswith("/_switch/transfers/"):
            transfer_id = path.rsplit("/", 1)[1]
            record = self.transfers.get(transfer_id)
            if record is None:
                return _json(404, {"message": "never seen", "queries": self.unknown_queries.get(transfer_id, 0)})
            return _json(200, {**asdict(record), "state": record.current()})
        if request.method == "POST" and path == "/_switch/hold":
            self._hold_next = True
            self._held_event.clear()
            return _json(200, {"holding": "the next prepare"})
        if request.method == "GET" and path == "/_switch/held":
            try:
                await asyncio.wait_for(self._held_event.wait(), timeout=float(query.get("wait_s", "0")))
            except TimeoutError:
                pass
            held = next(iter(self._held), None)
            return _json(200, {"transferId": held}) if held else _json(404, {"message": "nothing held"})
        if request.method == "POST" and path.startswith("/_switch/held/"):
            decision = self._held.get(path.rsplit("/", 1)[1])
            if decision is None:
                return _json(404, {"message": "not held"})
            decision.set_result(query.get("forward") == "true")
            return _json(200, {"forwarded": query.get("forward") == "true"})
        return _json(404, {"message": "no such control"})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _transparent_client(base_url: str) -> httpx.AsyncClient:
    """A client that adds no header of its own: the SDK refuses an `Accept: */*` it did not get from the peer."""
    client = httpx.AsyncClient(base_url=base_url, timeout=30)
    for name in ("accept", "accept-encoding", "user-agent"):
        del client.headers[name]
    return client


async def _forward(client: httpx.AsyncClient, request: Request) -> Answer:
    headers = [(k, v) for k, v in request.headers if k not in _HOP_BY_HOP]
    try:
        response = await client.request(request.method, request.target, content=request.body, headers=headers)
    except httpx.HTTPError as error:
        return _json(502, {"errorInformation": {"errorCode": "1001", "errorDescription": type(error).__name__}})
    kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
    return Answer(response.status_code, response.content, kept)


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(status: int, body: dict[str, Any]) -> Answer:
    return Answer(status, json.dumps(body).encode(), [("content-type", "application/json")])


def _query(target: str) -> dict[str, str]:
    query = target.split("?", 1)[1] if "?" in target else ""
    return dict(pair.split("=", 1) for pair in query.split("&") if "=" in pair)


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)


async def _main(args: argparse.Namespace) -> None:
    front = SwitchFront(args.ttk_url, args.sdk_inbound_url, args.jws_key)
    servers = [Http11Server(front.from_sdk), Http11Server(front.from_ttk)]
    await servers[0].start(args.sdk_side)
    await servers[1].start(args.ttk_side)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"switch front: SDK side {args.sdk_side}, TTK side {args.ttk_side}", flush=True)
    await stop.wait()
    for server in servers:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness.switch", description=__doc__.splitlines()[0])
    parser.add_argument("--sdk-side", type=int, required=True, help="port the SDK's peer endpoints point at")
    parser.add_argument("--ttk-side", type=int, required=True, help="port TTK's callback endpoint points at")
    parser.add_argument("--ttk-url", required=True, help="TTK's FSPIOP API (its API_PORT)")
    parser.add_argument("--sdk-inbound-url", required=True, help="the SDK's inbound API")
    parser.add_argument("--jws-key", type=Path, help="sign our own callbacks with this key (JWS on)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
