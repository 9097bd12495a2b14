"""The plugin manager: the default plugins plus the installed ones (entry-point group `stepstream`).

Every hook call goes through `relay` (fire and forget) or `collect` (gather what
implementations return); both isolate each implementation, so one broken plugin
costs only its own contribution.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

from . import hookspecs
from .errors import PluginConflict

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "stepstream"
LOAD_PLUGINS_ENV = "STEPSTREAM_LOAD_PLUGINS"

# Built-ins are registered exactly like third-party plugins (datasette's DEFAULT_PLUGINS):
# a name and the module holding its hooks, as an entry point gives them. Every command,
# `--help` included, imports these modules, so each is light and a hook imports what it
# offers when called. The stores and the transport keep their implementation module's
# name. They import `hookimpl` from hookspecs, never this module.
DEFAULT_PLUGINS: dict[str, str] = {
    "stepstream.stores.memory": "stepstream.stores.memory_plugin",
    "stepstream.stores.sqlite": "stepstream.stores.sqlite_plugin",
    "stepstream.transports.http": "stepstream.transports.http_plugin",
    "stepstream.cli.commands": "stepstream.cli.commands",
    "stepstream.cli.remote": "stepstream.cli.remote",
}

log = logging.getLogger("stepstream.plugins")


def _skipped(plugin_name: str, hook_name: str) -> None:
    log.exception(
        "plugin %r raised in hook %s; this call of it is skipped, "
        "the pipeline and the other plugins go on",
        plugin_name,
        hook_name,
    )


class HookRelay:
    """Fires hooks: every implementation, in pluggy's order, each one isolated.

    Two reasons not to use `pm.hook.<name>(...)` on the hot path: pluggy stops at
    the first implementation that raises, and a progress plugin that breaks must
    neither fail the pipeline nor starve the plugins after it; and pluggy's generic
    call costs about 1.5 µs, more than the rest of a step's bookkeeping. So the
    relay compiles, per hook, one keyword-only function that calls each
    implementation positionally inside its own try/except (the way dataclasses
    generate `__init__`), rebuilt whenever a plugin is (un)registered. Hooks with
    wrapper implementations go through pluggy, isolated as a whole.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    def invalidate(self) -> None:
        """Forget the compiled hooks; the next call rebuilds them from the registered plugins."""
        self.__dict__ = {"_pm": self._pm}

    def __getattr__(self, name: str) -> Callable[..., None]:
        caller = getattr(self._pm.hook, name)
        impls = caller.get_hookimpls()
        if caller.spec is None or any(impl.hookwrapper or impl.wrapper for impl in impls):
            fire = _isolated_call(name, caller)
        else:
            fire = _compile(name, caller.spec.argnames, list(reversed(impls)))
        setattr(self, name, fire)
        return fire


def _isolated_call(hook_name: str, caller: Any) -> Callable[..., None]:
    def fire(**kwargs: Any) -> None:
        try:
            caller(**kwargs)
        except Exception:
            _skipped("(a wrapper chain)", hook_name)

    return fire


def _compile(hook_name: str, argnames: tuple[str, ...], impls: list[Any]) -> Callable[..., None]:
    """Source for `def fire(*, a, b): try: impl_0(a) except Exception: failed(0) ...`."""
    lines = [f"def fire(*, {', '.join(argnames)}):" if argnames else "def fire():"]
    namespace: dict[str, Any] = {}
    for i, impl in enumerate(impls):
        namespace[f"impl_{i}"] = impl.function
        lines += [
            "    try:",
            f"        impl_{i}({', '.join(impl.argnames)})",
            "    except Exception:",
            f"        failed({i})",
        ]
    if not impls:
        lines.append("    pass")

    def failed(index: int) -> None:
        _skipped(impls[index].plugin_name, hook_name)

    namespace["failed"] = failed
    exec("\n".join(lines), namespace)
    return namespace["fire"]


class Offer(NamedTuple):
    """Something a `register_*` hook returned, and the plugin that offered it."""

    value: Any
    plugin: str


class Offered(Mapping[str, Any]):
    """What `register_*` hooks offer, by key (a URL scheme, a pipeline name).

    Looking up a key that several plugins offer raises PluginConflict naming
    them, so a conflict stops only what uses that key.
    """

    def __init__(self, offers: dict[str, list[Offer]], kind: str) -> None:
        self._offers = offers
        self._kind = kind

    def __getitem__(self, key: str) -> Any:
        offers = self._offers[key]
        plugins = sorted({offer.plugin for offer in offers})
        if len(plugins) > 1:
            raise PluginConflict(f"{self._kind} {key!r}", plugins)
        return offers[0].value

    def __iter__(self) -> Iterator[str]:
        return iter(self._offers)

    def __len__(self) -> int:
        return len(self._offers)

    def plugin(self, key: str) -> str:
        """The plugin (or plugins, comma separated) offering `key`."""
        return ", ".join(sorted({offer.plugin for offer in self._offers[key]}))


def _normalized(name: str) -> str:
    """Distribution names compare as packaging does: case and -_. runs do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus `relay` and `collect`, the isolated ways to call hooks."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.relay = HookRelay(self)
        self._origins: dict[str, str] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register `plugin`; the relay picks it up on its next call."""
        plugin_name = super().register(plugin, name)
        self.relay.invalidate()
        return plugin_name

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister `plugin`; the relay drops it on its next call."""
        removed = super().unregister(plugin, name)
        self.relay.invalidate()
        return removed

    def collect(self, hook_name: str, **kwargs: Any) -> list[Offer]:
        """Call every implementation of a hook, each isolated; what each returned, if anything."""
        caller = getattr(self.hook, hook_name)
        offers = []
        for impl in reversed(caller.get_hookimpls()):
            try:
                value = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                _skipped(impl.plugin_name, hook_name)
                continue
            if value is not None:
                offers.append(Offer(value, impl.plugin_name))
        return offers

    def offered(
        self, hook_name: str, kind: str, key: Callable[[Any], str] | None = None
    ) -> Offered:
        """What a `register_*` hook offers by key: a dict's keys, or `key(item)` of a list's."""
        found: dict[str, list[Offer]] = {}
        for offer in self.collect(hook_name):
            value = offer.value
            items: Iterable[tuple[str, Any]] = (
                value.items() if key is None else ((key(item), item) for item in value)
            )
            for name, item in items:
                found.setdefault(name, []).append(Offer(item, offer.plugin))
        return Offered(found, kind)

    def store_schemes(self) -> Offered:
        """Store classes by URL scheme, as `register_stores` offers them."""
        return self.offered("register_stores", "store scheme")

    def transport_schemes(self) -> Offered:
        """Transport classes by URL scheme, as `register_transports` offers them."""
        return self.offered("register_transports", "transport scheme")

    def pipelines(self) -> Offered:
        """Pipelines by name, as `register_pipelines` offers them."""
        return self.offered("register_pipelines", "pipeline", key=lambda pipeline: pipeline.name)

    def load_entrypoints(self) -> None:
        """Register the installed plugins; `STEPSTREAM_LOAD_PLUGINS` narrows which.

        Unset, every plugin of the entry-point group loads; set, only those it
        names (entry-point or distribution names, comma separated; empty for
        none). A plugin that fails to load is logged and skipped.
        """
        from importlib.metadata import entry_points  # 15 ms, for the engines that load plugins

        selection = os.environ.get(LOAD_PLUGINS_ENV)
        wanted = (
            None
            if selection is None
            else {_normalized(n.strip()) for n in selection.split(",") if n.strip()}
        )
        seen: set[str] = set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            names = {_normalized(ep.name)} | ({_normalized(ep.dist.name)} if ep.dist else set())
            seen |= names
            if wanted is not None and not names & wanted:
                continue
            self._load(ep)
        if wanted and wanted - seen:
            log.warning(
                "%s names %s, which no installed plugin is called (installed: %s)",
                LOAD_PLUGINS_ENV,
                ", ".join(sorted(wanted - seen)),
                ", ".join(sorted(seen)) or "none",
            )

    def _load(self, ep: EntryPoint) -> None:
        if self.has_plugin(ep.name):
            return
        try:
            self.register(ep.load(), name=ep.name)
        except Exception:
            log.exception("could not load plugin %r (%s); skipping it", ep.name, ep.value)
            return
        dist = ep.dist
        self._origins[ep.name] = f"{dist.name} {dist.version}" if dist else ep.value

    def origin(self, name: str) -> str:
        """Where a registered plugin came from: `distribution version`, or `built-in`."""
        return self._origins.get(name, "built-in")


def make_plugin_manager(*, load_entrypoints: bool = True) -> PluginManager:
    """A manager holding the default plugins and, unless told not to, installed ones."""
    pm = PluginManager()
    for name, module_name in DEFAULT_PLUGINS.items():
        pm.register(importlib.import_module(module_name), name=name)
    if load_entrypoints:
        pm.load_entrypoints()
    return pm
