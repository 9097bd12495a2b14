"""The plugin manager: default plugins plus everything in the `stepstream` entry-point group."""

from __future__ import annotations

import functools
import importlib
import logging
from importlib.metadata import entry_points
from collections.abc import Callable
from typing import Any

import pluggy

from . import hookspecs

hookimpl = pluggy.HookimplMarker("stepstream")

ENTRY_POINT_GROUP = "stepstream"

# Built-ins are registered exactly like third-party plugins (datasette's DEFAULT_PLUGINS).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "stepstream.stores.memory",
    "stepstream.default_commands",
)

log = logging.getLogger("stepstream.plugins")


def _isolated(plugin_name: str, hook_name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a hook implementation so that its exception is logged instead of propagated."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            log.exception("plugin %r failed in hook %s; carrying on without it", plugin_name, hook_name)
            return None

    return call


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, with each plugin's execution hooks isolated from the others.

    pluggy stops calling the remaining implementations when one raises; a progress
    plugin that breaks must not fail the pipeline or starve the other plugins, so
    every registered implementation is wrapped at registration time.
    """

    ISOLATED_HOOKS = frozenset(
        {
            "execution_started",
            "step_started",
            "step_progress",
            "step_done",
            "step_failed",
            "execution_finished",
        }
    )

    def __init__(self) -> None:
        super().__init__("stepstream")
        self.add_hookspecs(hookspecs)
        self._origins: dict[str, str] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register `plugin` and isolate its execution hooks."""
        plugin_name = super().register(plugin, name)
        if plugin_name is None:
            return None
        for caller in self.get_hookcallers(plugin) or ():
            if caller.name not in self.ISOLATED_HOOKS:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                    impl.function = _isolated(plugin_name, caller.name, impl.function)
        return plugin_name

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
