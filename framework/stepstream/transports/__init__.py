"""Transports: how an execution's events leave the process that runs it and reach others.

A transport is a plugin chosen by URL scheme (`register_transports`), as stores
are. Every transport can publish batches of `Envelope`s; one that can be read
(a broker) also yields them to a subscriber from a position it keeps. What
travels is the wire format of `model.events`; `wire.py` encodes and decodes it.
`Publisher` sends an engine's events off the hot path; `Subscriber` brings a
readable transport's events into an engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import StepstreamError

if TYPE_CHECKING:  # the wire format (msgspec) loads once a transport is opened, not before
    from ..model.events import Envelope
    from .wire import Gap


class TransportError(StepstreamError):
    """A transport cannot be opened, or could not deliver now; the message says which and why."""


class TransportRejected(TransportError):
    """The receiver refused a batch as malformed: sending it again would not help."""


@runtime_checkable
class Transport(Protocol):
    """Carries envelopes from this process to others."""

    url: str  # as given, for messages; `redacted` hides a password in it

    @classmethod
    def from_url(cls, url: str) -> Transport:
        """Open the transport a URL names; TransportError saying what is wrong with it."""
        ...

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        """Deliver a batch, in order; TransportError when it could not (the sender retries).

        Returns the gaps a receiver reported, if the transport can tell (a server
        answering over HTTP can; a broker cannot).
        """
        ...

    async def aclose(self) -> None:
        """Release connections; what was not delivered is the sender's to count.

        May be called more than once (`publishing` closes what it was given, and
        owners close it too).
        """
        ...


class Delivery(Protocol):
    """A batch read from a transport, acknowledged once the reader has kept it."""

    envelopes: list[Envelope]

    async def ack(self) -> None:
        """Move the reader's kept position past this batch."""
        ...


@runtime_checkable
class ReadableTransport(Transport, Protocol):
    """A transport a subscriber can read from: a broker keeping what was published."""

    def read(self) -> AsyncIterator[Delivery]:
        """Batches from the position this reader kept, then live ones, until closed.

        The reader acknowledges them in the order they came. A lost connection is
        best retried inside; a `TransportError` out of it makes the subscriber
        read again after a pause.
        """
        ...

    async def backfill(self, execution_id: str, after: int) -> list[Envelope]:
        """What the transport still holds of an execution after seq `after`, for a gap.

        With `after` 0, the first envelope should carry the execution's record, as
        the first one published did, for a reader that never saw its start.
        """
        ...


@runtime_checkable
class QueueingTransport(Transport, Protocol):
    """A transport that keeps what `publish` accepts in a queue of its own and delivers it later.

    Its `publish` returns once a batch is queued, so a slow receiver never holds up
    the publisher; the publisher runs `deliver` on a task beside its own and, when
    publishing ends, waits for its queue with `flush` in the time that is left.
    """

    async def deliver(self) -> None:
        """Deliver what is queued, until cancelled; never raises otherwise."""
        ...

    async def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the queue to drain; how many events are left in it."""
        ...


@runtime_checkable
class CancelRelay(Protocol):
    """A transport that also carries cancel requests to the process running an execution.

    A server holding it (subscribed) forwards `POST .../cancel` of an execution run
    elsewhere; a worker publishing through it hears them and cancels, so the step's
    next Progress call raises as for a local cancel.
    """

    async def request_cancel(self, execution_id: str) -> None:
        """Ask whichever process runs `execution_id` to cancel it."""
        ...

    def cancel_requests(self) -> AsyncIterator[str]:
        """Ids of executions this process was asked to cancel, as requests arrive."""
        ...


def open_transport(url: str, schemes: Mapping[str, type[Transport]]) -> Transport:
    """Open the transport a URL names, e.g. `http://server:8000` or `redis://host/0`."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        known = ", ".join(f"{s}://" for s in sorted(schemes)) or "none"
        raise TransportError(f"transport URL {url!r} has no scheme (installed: {known})")
    transport_class = schemes.get(scheme)
    if transport_class is None:
        known = ", ".join(f"{s}://" for s in sorted(schemes)) or "none"
        raise TransportError(f"no transport plugin handles {scheme}:// (installed: {known})")
    return transport_class.from_url(url)


def redacted(url: str) -> str:
    """A URL fit for a log line: a password in it becomes `***`."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def __getattr__(name: str) -> object:
    """`Gap`, from the wire format on first use: every command loads this package."""
    if name == "Gap":
        from .wire import Gap

        return Gap
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
