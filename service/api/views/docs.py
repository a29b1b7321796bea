"""``/openapi.json`` and ``/docs`` (Swagger UI served from the installed package, no CDN)."""

from __future__ import annotations

from aiohttp import web

from service.api.auth import Caller
from service.api.openapi import openapi_document
from service.api.routes import route
from service.core.runtime import package_version

SWAGGER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>callbackhub API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


@route(
    "GET",
    "/openapi.json",
    summary="This OpenAPI document",
    tag="docs",
    authenticated=False,
)
async def openapi_json(request: web.Request, caller: Caller) -> web.Response:
    return web.json_response(openapi_document(package_version()))


@route("GET", "/docs", summary="Swagger UI of this API", tag="docs", authenticated=False)
async def swagger_page(request: web.Request, caller: Caller) -> web.Response:
    return web.Response(text=SWAGGER_PAGE, content_type="text/html")


def add_routes(app: web.Application) -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.router.add_static("/docs/assets", str(swagger_ui_path))
