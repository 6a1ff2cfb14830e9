"""`make run`'s process supervision (the launcher, mojaflow/launcher.py, says what runs).

A worker or an API process that dies is started again after a back-off (1 s, doubling up to 30 s; back to 1 s
once it stayed up a minute), each restart logged and counted, as a production supervisor (systemd, Kubernetes)
would: they hold no state of their own, Temporal and the database do. The dev server and the simulators hold the
state of this machine's stack: when one of them dies, everything stops with a message naming it, rather than a
half-stack that looks alive. Every process is ours, started here and ended by its PID.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass, field

__all__ = ["Component", "Supervisor", "backoff_s"]

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # up this long: its next crash is a new incident, back-off from the start
STOP_DEADLINE_S = 8.0
PORT_WAIT_S = 60.0


def backoff_s(consecutive_failures: int) -> float:
    """The wait before restart number `consecutive_failures` (1, 2, ...) of a crash loop: 1 s, 2 s, 4 s, … 30 s."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, consecutive_failures - 1))


@dataclass
class Component:
    name: str
    argv: list[str]
    port: int = 0  # 0: nothing to wait for (a worker)
    host: str = "127.0.0.1"
    restart: bool = False  # a worker or an API process: restarted with back-off when it dies
    env: dict[str, str] = field(default_factory=dict)  # on top of the supervisor's (e.g. a worker's metrics port)
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    restarts: int = 0
    failures: int = 0  # consecutive ones: the back-off's exponent
    started_at: float = 0.0


def _say(message: str) -> None:
    print(f"mojaflow: {message}", file=sys.stderr, flush=True)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts the components in order, keeps the restartable ones up, stops them all (last started first)."""

    def __init__(self, components: list[Component], env: dict[str, str]) -> None:
        self.components = components
        self._env = env
        self._pumps: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self, component: Component) -> None:
        """Start one process and wait for its port, if it has one; RuntimeError if it dies or never listens."""
        loop = asyncio.get_running_loop()
        component.process = await asyncio.create_subprocess_exec(
            *component.argv,
            env={**self._env, **component.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the children in order
        )
        component.started_at = loop.time()
        print(f"mojaflow: started {component.name} (pid {component.process.pid})", flush=True)
        self._pumps.append(asyncio.create_task(_pump(component)))
        if component.port:
            await _wait_for_port(component, PORT_WAIT_S)

    async def supervise(self, stop_requested: asyncio.Event) -> int:
        """Until a stop is requested (0) or a component that is not restarted dies (1, with a message)."""
        keepers = [asyncio.create_task(self._keep_up(c, stop_requested)) for c in self.components if c.restart]
        essential = {asyncio.create_task(c.process.wait()): c for c in self.components if not c.restart and c.process}
        waiter = asyncio.create_task(stop_requested.wait())
        try:
            await asyncio.wait([waiter, *essential], return_when=asyncio.FIRST_COMPLETED)
            dead = [c for c in essential.values() if c.process and c.process.returncode is not None]
            for component in dead:
                assert component.process
                _say(
                    f"{component.name} {_exit_text(component.process.returncode)}: stopping everything "
                    "(the Temporal dev server and the simulators are not restarted; see its lines above)"
                )
            return 1 if dead and not stop_requested.is_set() else 0
        finally:
            self._stopping = True
            for task in [waiter, *essential, *keepers]:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep_up(self, component: Component, stop_requested: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            assert component.process
            code = await component.process.wait()
            if self._stopping or stop_requested.is_set():
                return
            uptime = loop.time() - component.started_at
            component.failures = 1 if uptime >= STABLE_AFTER_S else component.failures + 1
            component.restarts += 1
            delay = backoff_s(component.failures)
            _say(
                f"{component.name} {_exit_text(code)} after {uptime:.0f} s: restart {component.restarts} "
                f"in {delay:.0f} s"
            )
            try:
                await asyncio.wait_for(stop_requested.wait(), delay)
                return  # a stop came during the back-off
            except TimeoutError:
                pass
            try:
                await self.start(component)
            except (RuntimeError, OSError) as error:  # it died again while starting: the loop backs off more
                _say(f"{component.name} did not come back: {error}")
                if component.process is None or component.process.returncode is None:
                    await _end(component)

    async def stop(self) -> None:
        """SIGTERM each running process, the last started first (the API and workers before Temporal), SIGKILL
        after its share of the deadline; then report the restarts."""
        self._stopping = True
        running = [c for c in reversed(self.components) if c.process and c.process.returncode is None]
        for component in running:
            await _end(component, STOP_DEADLINE_S / max(len(running), 1))
        for pump in self._pumps:
            pump.cancel()
        restarted = [f"{c.name} {c.restarts}" for c in self.components if c.restarts]
        if restarted:
            _say("restarts while up: " + ", ".join(restarted))


async def _end(component: Component, deadline_s: float = STOP_DEADLINE_S) -> None:
    process = component.process
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), deadline_s)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _pump(component: Component) -> None:
    process = component.process
    assert process and process.stdout
    prefix = f"{component.name:>8} | "
    async for line in process.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_for_port(component: Component, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if component.process and component.process.returncode is not None:
            raise RuntimeError(f"{component.name} {_exit_text(component.process.returncode)}")
        try:
            _, writer = await asyncio.open_connection(component.host, component.port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"{component.name} did not listen on port {component.port} within {timeout_s:.0f} s")
