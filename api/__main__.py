"""`python -m api`: serves the client API (3004) and the backend API (3003) from one process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from api.app import create_backend_app, create_client_app, open_resources
from mojaflow.logs import configure_logging
from mojaflow.settings import Settings


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # both servers stop on our own handler, below
        yield


async def serve(settings: Settings) -> None:
    async with open_resources(settings) as resources:  # one database engine and one Temporal client for both
        servers = [
            _Server(uvicorn.Config(app, host=settings.api_host, port=port, log_config=None, lifespan="on"))
            for app, port in (
                (create_client_app(settings, resources), settings.client_api_port),
                (create_backend_app(settings, resources), settings.backend_api_port),
            )
        ]
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        await asyncio.gather(*(server.serve() for server in servers))


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
