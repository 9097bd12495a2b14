"""The outbox file: in order, one message out at a time, bounded, shared safely by many writers.

Two `Outbox` objects on one file stand for two processes: each has its own
SQLite connection, so they take turns through the same file locks.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from stepstream_webhooks.outbox import HANDOVER, Claimed, Message, Outbox


def _message(n: int, kind: str = "started", execution_id: str = "exec_A") -> Message:
    return Message(f"{execution_id}:{n}", execution_id, kind, b'{"n": %d}' % n, time.time())


def _claimed(outbox: Outbox) -> Claimed:
    head = outbox.claim(lease=60)
    assert isinstance(head, Claimed), head
    return head


def test_messages_leave_in_the_order_they_came_one_at_a_time(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", limit=100)
    outbox.add([_message(1), _message(2)])
    outbox.add([_message(3)])
    first = _claimed(outbox)
    assert first.msg_id == "exec_A:1"
    assert outbox.claim(lease=60) == HANDOVER  # the head is out: nobody goes past it
    outbox.remove(first)
    assert [_take(outbox) for _ in range(2)] == ["exec_A:2", "exec_A:3"]
    assert outbox.claim(lease=60) is None


def test_a_retried_message_waits_until_due_and_a_released_one_goes_at_once(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", limit=100)
    outbox.add([_message(1)])
    outbox.retry(_claimed(outbox), due=time.time() + 30)
    wait = outbox.claim(lease=60)
    assert isinstance(wait, float) and 29 < wait <= 30
    other = Outbox(tmp_path / "o.sqlite3", limit=100)
    assert isinstance(other.claim(lease=60), float)  # the due time holds for every process
    outbox.retry(_claimed_after_due(outbox), due=0)
    head = _claimed(outbox)
    assert head.attempts == 2
    outbox.release(head)
    assert _claimed(other).msg_id == "exec_A:1"


def test_the_same_id_is_queued_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", limit=100)
    outbox.add([_message(1), _message(1)])
    outbox.add([_message(1)])
    assert outbox.count() == 1


def test_a_newer_progress_event_replaces_one_still_waiting(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", limit=100)
    outbox.add([_message(1, "started"), _message(2, "progress"), _message(3, "progress")])
    outbox.add([_message(1, "progress", execution_id="exec_B"), _message(4, "progress")])
    outbox.add([_message(5, "completed")])
    assert [_take(outbox) for _ in range(4)] == ["exec_A:1", "exec_B:1", "exec_A:4", "exec_A:5"]


def test_past_the_limit_the_oldest_go(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", limit=3)
    assert outbox.add([_message(n) for n in range(1, 4)]) == 0
    assert outbox.add([_message(4), _message(5)]) == 2
    assert [_take(outbox) for _ in range(3)] == ["exec_A:3", "exec_A:4", "exec_A:5"]


def test_messages_older_than_the_retry_period_expire(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", limit=100)
    old = Message("exec_A:1", "exec_A", "started", b"{}", time.time() - 100)
    outbox.add([old, _message(2)])
    assert outbox.expire(before=time.time() - 50) == 1
    assert _take(outbox) == "exec_A:2"


def test_two_writers_on_one_file_never_take_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path, limit=1000).add([_message(n) for n in range(1, 201)])
    taken: list[list[str]] = [[], []]
    both_open = threading.Barrier(2, timeout=60)

    def drain(mine: list[str]) -> None:
        outbox = Outbox(path, limit=1000)
        both_open.wait()
        while (head := outbox.claim(lease=60)) is not None:
            if isinstance(head, Claimed):
                mine.append(head.msg_id)
                outbox.remove(head)

    workers = [threading.Thread(target=drain, args=(mine,)) for mine in taken]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    everything = taken[0] + taken[1]
    assert sorted(everything) == sorted(f"exec_A:{n}" for n in range(1, 201))
    (check,) = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()
    assert check == "ok"


def test_one_file_per_receiver_named_after_its_host(tmp_path: Path) -> None:
    one = Outbox.for_receiver(tmp_path, "https://ci.example/hook", limit=10)
    same = Outbox.for_receiver(tmp_path, "https://ci.example/hook", limit=10)
    other = Outbox.for_receiver(tmp_path, "https://ci.example/other", limit=10)
    assert one.path == same.path != other.path
    assert one.path.name.startswith("ci.example-")


def _take(outbox: Outbox) -> str:
    head = _claimed(outbox)
    outbox.remove(head)
    return head.msg_id


def _claimed_after_due(outbox: Outbox) -> Claimed:
    """The head once its due time is moved to now (as time passing would)."""
    with sqlite3.connect(outbox.path) as db:
        db.execute("UPDATE outbox SET due = 0")
    return _claimed(outbox)
