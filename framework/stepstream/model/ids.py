"""Execution ids: `exec_` + a ULID, so ids sort by creation time and never repeat."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Ten bits at a time: 13 lookups of a two-character string instead of 26 shifts and joins.
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
_SHIFTS = range(120, -1, -10)  # a ULID's 128 bits as 26 characters: 130 bits, 13 pairs
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def new_execution_id() -> str:
    """A time-ordered unique id; monotonic within one process even inside one millisecond."""
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            _last_random += 1
        else:
            _last_random = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms = now_ms
        value = (now_ms << 80) | _last_random
    return "exec_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
