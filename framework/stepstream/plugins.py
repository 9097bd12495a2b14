"""The plugin manager: default plugins plus everything in the `stepstream` entry-point group."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs

hookimpl = pluggy.HookimplMarker("stepstream")

ENTRY_POINT_GROUP = "stepstream"

# Built-ins are registered exactly like third-party plugins (datasette's DEFAULT_PLUGINS).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "stepstream.stores.memory",
    "stepstream.stores.sqlite",
    "stepstream.default_commands",
)

log = logging.getLogger("stepstream.plugins")


class HookRelay:
    """Fires the execution hooks: every implementation, in pluggy's order, each one isolated.

    Two reasons not to use `pm.hook.<name>(...)` on the hot path: pluggy stops at
    the first implementation that raises, and a progress plugin that breaks must
    neither fail the pipeline nor starve the plugins after it; and pluggy's generic
    call costs about 1.5 µs, more than the rest of a step's bookkeeping. So the
    relay compiles, per hook, one keyword-only function that calls each
    implementation positionally inside its own try/except (the way dataclasses
    generate `__init__`), rebuilt whenever a plugin is (un)registered. Hooks with
    wrapper implementations go through pluggy itself.
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
            fire = caller
        else:
            fire = _compile(name, caller.spec.argnames, list(reversed(impls)))
        setattr(self, name, fire)
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
        log.exception(
            "plugin %r failed in hook %s; carrying on without it",
            impls[index].plugin_name,
            hook_name,
        )

    namespace["failed"] = failed
    exec("\n".join(lines), namespace)
    return namespace["fire"]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus `relay`, the isolated fast path for execution hooks."""

    def __init__(self) -> None:
        super().__init__("stepstream")
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

    def load_entrypoints(self) -> None:
        """Register every plugin of the entry-point group; one that fails to load is skipped."""
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if self.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception:
                log.exception("could not load plugin %r (%s); skipping it", ep.name, ep.value)
                continue
            dist = ep.dist
            self._origins[ep.name] = f"{dist.name} {dist.version}" if dist else ep.value

    def origin(self, name: str) -> str:
        """Where a registered plugin came from: `distribution version`, or `built-in`."""
        return self._origins.get(name, "built-in")


def make_plugin_manager(*, load_entrypoints: bool = True) -> PluginManager:
    """A manager holding the default plugins and, unless told not to, installed ones."""
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entrypoints:
        pm.load_entrypoints()
    return pm
