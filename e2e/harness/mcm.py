"""A stand-in for the Mojaloop Connection Manager's API, for TTK's JWS mode only.

    python -m e2e.harness.mcm --port PORT --cert pm4mldfsp=sdk/cert.pem --cert testingtoolkitdfsp=switch/cert.pem

TTK 18.19.2 takes its peers' JWS certificates only from a Connection Manager (`CONNECTION_MANAGER.ENABLED`): it
lists the environments and their DFSPs and reads each DFSP's `jwscerts`, again every few seconds, and uploads its
own. This answers those reads from the harness's certificates and accepts (echoes) the writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from pathlib import Path

from e2e.harness.http11 import Answer, Handler, Http11Server, Request

_ENVIRONMENT = {"id": 1, "name": "TESTING-TOOLKIT"}
_JWS_CERTS = re.compile(r"^/api/environments/1/dfsps/([^/]+)/jwscerts$")


def handler(certs: dict[str, str]) -> Handler:
    async def handle(request: Request) -> Answer:
        if request.method in ("POST", "PUT"):
            try:
                echoed = json.loads(request.body or b"{}")
            except ValueError:
                echoed = {}
            return _json(200, {"id": 1, **echoed} if isinstance(echoed, dict) else {"id": 1})
        if request.path in ("/health", "/api/environments"):
            return _json(200, [_ENVIRONMENT])
        if request.path == "/api/environments/1/dfsps":
            return _json(200, [{"id": dfsp, "name": dfsp} for dfsp in certs])
        match = _JWS_CERTS.match(request.path)
        if match and match.group(1) in certs:
            cert = {"rootCertificate": None, "intermediateChain": None, "jwsCertificate": certs[match.group(1)]}
            return _json(200, {"id": match.group(1), **cert})
        return _json(404, {"message": "not here"})

    return handle


def _json(status: int, body: object) -> Answer:
    return Answer(status, json.dumps(body).encode(), [("content-type", "application/json")])


async def _main(port: int, certs: dict[str, str]) -> None:
    server = Http11Server(handler(certs))
    await server.start(port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"connection manager stand-in on {port}: {sorted(certs)}", flush=True)
    await stop.wait()
    await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness.mcm", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", action="append", default=[], metavar="DFSP=PEM", help="a DFSP's JWS certificate")
    args = parser.parse_args()
    certs = {dfsp: Path(path).read_text() for dfsp, path in (item.split("=", 1) for item in args.cert)}
    asyncio.run(_main(args.port, certs))


if __name__ == "__main__":
    main()
