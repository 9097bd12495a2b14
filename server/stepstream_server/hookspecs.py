"""Server hooks: plugins add routes and wrap the ASGI app, as datasette's plugins do.

These join the framework's hooks (`stepstream.hookspecs`) when `create_app`
builds an app; implement them with `@stepstream.hookimpl` like any other hook.
Each is called once per app, isolated: a plugin that raises is logged and left out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from stepstream import PluginManager, hookspec

if TYPE_CHECKING:
    from litestar.types import ASGIApp, ControllerRouterHandler

    from stepstream import Engine


@hookspec
def register_routes(engine: Engine) -> Sequence[ControllerRouterHandler] | None:
    """Return Litestar route handlers (`@get`/`@post`/... functions, Controllers, Routers).

    They are served at the paths they declare, beside `/api/v1`, behind the same
    token as every route unless a handler sets `opt={"public": True}`. Take the
    engine as a handler parameter named `engine` (Litestar injects it) or use the
    one passed here.
    """


@hookspec
def asgi_wrapper(engine: Engine) -> Callable[[ASGIApp], ASGIApp] | None:
    """Return a function that takes the ASGI app and returns one wrapping it.

    Wrappers see every request and WebSocket before authentication and routing
    (for logging, metrics, headers or an auth scheme of your own), but after the
    server's Host and Origin checks (`stepstream_server.sites`), which refuse what
    other web sites send; the first plugin registered ends up outermost.
    """


def add_server_hookspecs(plugins: PluginManager) -> None:
    """Teach a plugin manager the server's hooks; safe to call for every app it serves."""
    if getattr(plugins.hook, "register_routes", None) is None or (
        plugins.hook.register_routes.spec is None
    ):
        plugins.add_hookspecs(sys.modules[__name__])
