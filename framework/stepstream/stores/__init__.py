"""Execution stores: where records and event logs live, chosen by URL (`memory://`, `sqlite:///x.db`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import StoreError
from ..events import Event, ExecutionRecord, Status

if TYPE_CHECKING:
    from ..plugins import PluginManager


@runtime_checkable
class ExecutionStore(Protocol):
    """What the tracker needs from a store; every method is safe to call from any thread."""

    @classmethod
    def from_url(cls, url: str) -> ExecutionStore:
        """Open the store a URL names; raise StoreError with a message naming what is wrong."""
        ...

    def append(self, record: ExecutionRecord, event: Event) -> None:
        """Keep `event` and the record state it produced; the first event creates the record."""
        ...

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record, or None for an unknown id."""
        ...

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """The logged events with `seq > after`, in order."""
        ...

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Records newest first; `before` is an execution id to page from (exclusive)."""
        ...

    def close(self) -> None:
        """Flush what is pending and release files or connections."""
        ...


def store_schemes(plugins: PluginManager) -> dict[str, type[ExecutionStore]]:
    """Every store a plugin offers, by URL scheme."""
    schemes: dict[str, type[ExecutionStore]] = {}
    for offered in plugins.hook.register_stores():
        schemes.update(offered or {})
    return schemes


def open_store(url: str, plugins: PluginManager) -> ExecutionStore:
    """Open the store a URL names, e.g. `memory://` or `sqlite:///var/stepstream.db`."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError(f"store URL {url!r} has no scheme; use e.g. memory:// or sqlite:///path.db")
    schemes = store_schemes(plugins)
    store_class = schemes.get(scheme)
    if store_class is None:
        known = ", ".join(f"{s}://" for s in sorted(schemes))
        raise StoreError(f"no store plugin handles {scheme}:// (installed: {known})")
    return store_class.from_url(url)
