"""Local stand-ins for the two systems mojaflow talks to.

* `simulators.sdk`: the outbound API of Mojaloop's SDK scheme adapter 18.0.2 (manual acceptance mode), with the
  switch and the payee DFSP faked behind it and a fault switch under `/_sim` for tests.
* `simulators.cbs`: a core banking system implementing `cbs-contract.openapi.yaml`.

Both are real HTTP servers (FastAPI + uvicorn) keeping their state in SQLite, so `make run` and the tests talk to
them exactly as they would talk to the real systems.
"""

__all__: list[str] = []
