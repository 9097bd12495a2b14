"""Retention: how many finished executions a store keeps, and the background task that prunes."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stepstream import StoreError

if TYPE_CHECKING:
    from stepstream import ExecutionStore

log = logging.getLogger("stepstream.retention")

PRUNE_INTERVAL = 60.0  # seconds between two prunings by default
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+)([smhd]?)")


@dataclass(frozen=True)
class Retention:
    """At most the newest `count` finished executions, none finished over `age_seconds` ago."""

    count: int | None = None
    age_seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> Retention:
        """`1000`, `7d` or `1000,30d` (units s, m, h, d); ValueError saying what is wrong."""
        count = age = None
        for part in text.split(","):
            match = _PART.fullmatch(part.strip())
            if match is None:
                raise ValueError(
                    f"{part.strip()!r} is neither a count (e.g. 1000) nor an age "
                    "(e.g. 30s, 15m, 12h, 7d)"
                )
            number, unit = int(match[1]), match[2]
            if unit and age is None:
                age = float(number * UNITS[unit])
            elif not unit and count is None:
                count = number
            else:
                raise ValueError(f"give at most one count and one age, e.g. 1000,30d; got {text!r}")
        return cls(count=count, age_seconds=age)

    def __str__(self) -> str:
        if self.age_seconds is None:
            return f"the newest {self.count} finished executions"
        if self.count is None:
            return f"finished executions up to {_age(self.age_seconds)} old"
        age = _age(self.age_seconds)
        return f"the newest {self.count} finished executions, none older than {age}"


def _age(seconds: float) -> str:
    """The largest unit that divides the age evenly: 7d, 36h, 90s."""
    for unit, size in reversed(UNITS.items()):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


async def prune_forever(store: ExecutionStore, retention: Retention, interval: float) -> None:
    """Prune now and every `interval` seconds, on a worker thread; a failed pass is logged."""
    import anyio  # here: `stepstream serve --help` parses `--keep` with this module, no loop

    prune = functools.partial(
        store.prune, keep_count=retention.count, keep_age_seconds=retention.age_seconds
    )
    while True:
        try:
            removed = await anyio.to_thread.run_sync(prune)
        except StoreError as exc:
            log.error("retention: %s; trying again in %gs", exc, interval)
        except Exception:  # a store plugin's bug must not stop the server
            log.exception("retention: pruning failed; trying again in %gs", interval)
        else:
            if removed:
                log.info("retention: pruned %d finished executions", removed)
        await anyio.sleep(interval)
