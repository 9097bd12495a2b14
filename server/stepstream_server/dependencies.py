"""What handlers receive through Litestar's dependency injection: the engine and `off_loop`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from litestar.di import Provide

from stepstream import Engine

if TYPE_CHECKING:
    from .submissions import Submissions

T = TypeVar("T")

STORE_THREADS = 8  # store calls waiting at once; more queue, so sync steps keep their threads


class OffLoop:
    """Runs calls that may read or flush the store on worker threads, never on the event loop.

    A store read is normally well under a millisecond, but a SQLite store flushes
    before replaying lifecycle events, and that takes half a second while its
    writer fails; the loop keeps serving everyone else meanwhile. The limiter is
    made when the app starts (anyio wants a running loop for it).
    """

    def __init__(self) -> None:
        self._limiter: anyio.CapacityLimiter | None = None

    def start(self) -> None:
        """Make the limiter; called by the app's lifespan."""
        self._limiter = anyio.CapacityLimiter(STORE_THREADS)

    async def __call__(self, call: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(call, *args, limiter=self._limiter)


def provide(engine: Engine, off_loop: OffLoop, submissions: Submissions) -> dict[str, Provide]:
    """The app's dependencies: handlers take `engine: Engine`, `off_loop: OffLoop` and
    `submissions: Submissions`."""
    return {
        "engine": Provide(lambda: engine, use_cache=True, sync_to_thread=False),
        "off_loop": Provide(lambda: off_loop, use_cache=True, sync_to_thread=False),
        "submissions": Provide(lambda: submissions, use_cache=True, sync_to_thread=False),
    }
