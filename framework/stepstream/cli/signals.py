"""Ctrl-C and SIGTERM for long-running commands: the first stops gracefully, a second quits."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

import anyio
import anyio.abc

EXIT_INTERRUPTED = 130


async def cancel_on_interrupt(
    cancel: Callable[[], None],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call `cancel` on the first Ctrl-C or SIGTERM; exit at once (130) on a second.

    Start it with `await task_group.start(cancel_on_interrupt, cancel)`: the work
    should begin only once the signals are ours, not asyncio's.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        interrupts = 0
        async for _ in signals:
            interrupts += 1
            if interrupts > 1:
                print("interrupted again: quitting now", file=sys.stderr, flush=True)
                os._exit(EXIT_INTERRUPTED)
            cancel()
