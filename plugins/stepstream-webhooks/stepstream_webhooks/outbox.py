"""The on-disk outbox: what waits for one receiver, in order, shared safely by every process.

One SQLite file per receiver, in WAL mode; every change is an immediate
transaction, so processes take turns through SQLite's file locks. Messages
leave in the order they were queued, one at a time: the head is leased to the
process delivering it, so two processes never send one message at once, and a
process that dies mid-delivery leaves a lease that runs out. A newer progress
event of an execution replaces one still waiting; past `limit`, the oldest go.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL DEFAULT 0,
    lease REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (execution_id, kind);
"""
LOCK_WAIT = 30.0  # seconds to wait for another process's transaction before failing
HANDOVER = 0.1  # seconds between looks at a head another process is sending


@dataclass(frozen=True)
class Message:
    """A webhook to send: its id, what it is about, its body, and when it was first queued."""

    msg_id: str
    execution_id: str
    kind: str
    body: bytes
    created: float  # Unix time


@dataclass(frozen=True)
class Claimed:
    """The head of the outbox, leased to this process until it reports how the attempt went."""

    row: int
    msg_id: str
    body: bytes
    created: float
    attempts: int  # made before this one


class Outbox:
    """The messages waiting for one receiver; every method may be called from any thread."""

    def __init__(self, path: Path, limit: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=LOCK_WAIT, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    @classmethod
    def for_receiver(cls, folder: Path, receiver: str, limit: int) -> Outbox:
        """The outbox of one receiver URL: a file named after its host and a hash of the URL."""
        host = re.sub(r"[^A-Za-z0-9.-]", "_", urlsplit(receiver).hostname or "receiver")
        digest = hashlib.sha256(receiver.encode()).hexdigest()[:16]
        return cls(folder / f"{host}-{digest}.sqlite3", limit)

    def add(self, messages: Sequence[Message]) -> int:
        """Queue messages (one already queued under its id stays as it is); how many of the
        oldest were dropped to stay within `limit`."""
        now = time.time()
        with self._transaction() as db:
            for message in messages:
                if message.kind == "progress":  # news of the same execution makes it stale
                    db.execute(
                        "DELETE FROM outbox WHERE execution_id = ? AND kind = 'progress'"
                        " AND lease <= ?",
                        (message.execution_id, now),
                    )
                db.execute(
                    "INSERT OR IGNORE INTO outbox (msg_id, execution_id, kind, body, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        message.msg_id,
                        message.execution_id,
                        message.kind,
                        message.body,
                        message.created,
                    ),
                )
            (count,) = db.execute("SELECT count(*) FROM outbox").fetchone()
            if count <= self.limit:
                return 0
            return db.execute(
                "DELETE FROM outbox WHERE row IN"
                " (SELECT row FROM outbox WHERE lease <= ? ORDER BY row LIMIT ?)",
                (now, count - self.limit),
            ).rowcount

    def expire(self, before: float) -> int:
        """Drop the messages first queued before `before` (Unix time); how many."""
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM outbox WHERE created < ? AND lease <= ?", (before, time.time())
            ).rowcount

    def claim(self, lease: float) -> Claimed | float | None:
        """The head, leased for `lease` seconds if it is due and free; else the seconds until
        it may be (soon, when another process is sending it), or None when the outbox is empty."""
        now = time.time()
        with self._transaction() as db:
            head = db.execute(
                "SELECT row, msg_id, body, created, attempts, due, lease FROM outbox"
                " ORDER BY row LIMIT 1"
            ).fetchone()
            if head is None:
                return None
            row, msg_id, body, created, attempts, due, leased = head
            if leased > now:
                return HANDOVER
            if due > now:
                return due - now
            db.execute("UPDATE outbox SET lease = ? WHERE row = ?", (now + lease, row))
        return Claimed(row=row, msg_id=msg_id, body=body, created=created, attempts=attempts)

    def remove(self, claimed: Claimed) -> None:
        """Forget a message: delivered, refused or given up on."""
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE row = ?", (claimed.row,))

    def retry(self, claimed: Claimed, due: float) -> None:
        """Count a failed attempt and free the message for another at `due` (Unix time)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, due = ?, lease = 0 WHERE row = ?",
                (due, claimed.row),
            )

    def release(self, claimed: Claimed) -> None:
        """Free a message whose attempt was abandoned, for any process to send at once."""
        with self._transaction() as db:
            db.execute("UPDATE outbox SET lease = 0 WHERE row = ?", (claimed.row,))

    def count(self) -> int:
        """Messages waiting, whichever process queued them."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return count

    def close(self) -> None:
        """Close the file; what waits in it stays for the next process."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: other processes wait (up to LOCK_WAIT) until it ends."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
