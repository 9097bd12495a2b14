"""The dashboard: its page at `/` and its files at `/static`, all readable without a token.

They are plain HTML, CSS and JavaScript modules shipped in this package; nothing is
built and nothing is fetched from elsewhere, so the dashboard works on an air-gapped
server. Everything they show comes from the API, which keeps its token. The OpenAPI
UIs Litestar bundles load their scripts from CDNs, so `/schema` is a plain page that
links the documents instead.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from litestar import Request, Response, route
from litestar.datastructures import CacheControlHeader
from litestar.enums import HttpMethod, MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

from ..auth import PUBLIC

STATIC = Path(__file__).with_name("static")
# Revalidate on every load, so an upgraded server never runs with yesterday's scripts.
REVALIDATE = CacheControlHeader(no_cache=True)
# The browser enforces "nothing from outside": scripts, styles and connections to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)


def dashboard_routes() -> list[HTTPRouteHandler | Router]:
    """The page at `/` and the static files under `/static/`, both marked public."""
    page = (STATIC / "index.html").read_bytes()

    @route(
        "/",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        media_type=MediaType.HTML,
        cache_control=REVALIDATE,
        include_in_schema=False,
        opt={PUBLIC: True},
    )
    async def dashboard() -> Response[bytes]:
        """The dashboard's one page; it routes by the URL's fragment (`#/executions/{id}`)."""
        return Response(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    files = create_static_files_router(
        "/static",
        [STATIC],
        cache_control=REVALIDATE,
        include_in_schema=False,
        opt={PUBLIC: True},
    )
    return [dashboard, files]


class SchemaLinks(OpenAPIRenderPlugin):
    """`/schema`: links to the OpenAPI documents, where Litestar would load a UI from a CDN."""

    def __init__(self) -> None:
        super().__init__(path="/", favicon='<link rel="icon" href="data:,">')

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(openapi_schema.get("info", {}).get("title", "API"))
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: OpenAPI</title>
{self.favicon}
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<main class="page">
<h1>{title} API</h1>
<ul>
<li><a href="/schema/openapi.json">OpenAPI document (JSON)</a></li>
<li><a href="/schema/openapi.yaml">OpenAPI document (YAML)</a></li>
<li><a href="/">Dashboard</a></li>
</ul>
<p>The WebSocket streams are described in the project's <code>docs/api.md</code>.</p>
</main>
</body>
</html>
""".encode()


def schema_plugins(documents: list[OpenAPIRenderPlugin]) -> list[OpenAPIRenderPlugin]:
    """`/schema` (links) beside the `documents` (`/schema/openapi.json` and `.yaml`): nothing
    external."""
    return [SchemaLinks(), *documents]
