"""Runs the app under uvicorn until Ctrl-C or SIGTERM, then shuts down gracefully.

uvicorn's own signal handling re-raises the signal after shutdown, which would
kill the process before the host's cleanup; here the host owns the signals and
asks uvicorn to exit, so the app's lifespan (and with it the engine, which
cancels running executions) always closes first.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from litestar import Litestar

from stepstream.cli import cancel_on_interrupt

from .redaction import redact_secrets_in_logs


class _HostSignalsServer(uvicorn.Server):
    """uvicorn that leaves signals to its host and reports when it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready()


def bind(host: str, port: int) -> socket.socket:
    """Claim the address before starting, so a busy port is reported at once and plainly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


SWITCH_INTERVAL = 0.001
YOUNG_GC_THRESHOLD = 20_000  # allocations between collections of the young generation


def run(
    app: Litestar,
    sock: socket.socket,
    on_ready: Callable[[], None],
    on_stop: Callable[[], None],
) -> bool:
    """Serve until a signal arrives; False when the app never started (e.g. its lifespan failed).

    `on_ready` runs once the server accepts connections, `on_stop` when shutdown begins.
    """
    redact_secrets_in_logs()  # WebSocket URLs carry ?token=, and uvicorn logs them with -v
    # A CPU-bound sync step holds the GIL for the default 5 ms slices, and every
    # WebSocket send waits for one; 1 ms slices keep streams live (p99 latency)
    # for a few percent of such a step's speed.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # Each pending execution keeps a few dozen objects alive. At CPython's default (a
    # young collection every 700 allocations, about every other request) the collector
    # took a quarter of POST /executions' throughput and paused the loop 250 ms (p99)
    # as they piled up; at 20,000 the young generation stays a few MB.
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # zlib lets go of the GIL twice per compressed frame, and with a sync step
        # spinning each retake can wait a switch interval: deflate cut a 100-reader
        # fan-out to a quarter. Progress frames are ~250 bytes; send them plain.
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,  # keeps idle progress streams alive through proxies
        ws_ping_timeout=20.0,  # and drops a peer that stopped answering
    )
    server = _HostSignalsServer(config, on_ready)

    def stop() -> None:
        on_stop()
        server.should_exit = True

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            # The first Ctrl-C/SIGTERM shuts down gracefully, a second exits at once (130).
            await tg.start(cancel_on_interrupt, stop)
            with contextlib.suppress(SystemExit):  # how uvicorn quits when the lifespan fails
                await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    anyio.run(main, backend_options={"use_uvloop": _has_uvloop()})
    return server.started


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
