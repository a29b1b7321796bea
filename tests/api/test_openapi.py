"""``/openapi.json`` is a valid OpenAPI 3.1 document of every route; ``/docs`` renders it from
assets the service serves itself."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from service.core.notification_types import NOTIFICATION_TYPES
from service.core.schemas import CallbackUpdate, PartnerCreate

METHODS = {"get", "put", "post", "delete", "patch"}


async def spec(client: TestClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")  # no token: the document is public
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return document


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route, leaving out the static files of /docs."""
    found = set()
    for route in app.router.routes():
        if isinstance(route.resource, web.StaticResource) or route.method == "HEAD":
            continue
        assert route.resource is not None
        found.add((route.method.lower(), route.resource.canonical))
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
        if method in METHODS
    ]


async def test_document_is_valid_openapi_3_1(client: TestClient) -> None:
    document = await spec(client)
    assert document["openapi"].startswith("3.1")
    validate(document)


ECHO = ("post", "/partners/{partnerUniqueID}/callbacks/{notificationTypeID}/echo")


def per_type_echo(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The routes as documented: echo once per notification type, the type in the path."""
    assert ECHO in routes
    echoes = {
        (ECHO[0], ECHO[1].replace("{notificationTypeID}", str(t))) for t in NOTIFICATION_TYPES
    }
    return (routes - {ECHO}) | echoes


async def test_every_route_is_documented_and_nothing_else(client: TestClient) -> None:
    document = await spec(client)
    documented = {(method, path) for method, path, _ in operations(document)}
    routes = per_type_echo(app_routes(client.app))
    assert ("put", "/partners/{partnerUniqueID}/callbacks/{notificationType}") in routes
    assert routes - documented == set()
    assert documented - routes == set()


async def test_each_echo_path_documents_the_body_of_its_own_type(client: TestClient) -> None:
    document = await spec(client)
    for type_id, model in NOTIFICATION_TYPES.items():
        path = ECHO[1].replace("{notificationTypeID}", str(type_id))
        operation = document["paths"][path]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        variants = [f"{model.__name__}ByProcess", f"{model.__name__}BySimulation"]
        assert schema == {"oneOf": [{"$ref": f"#/components/schemas/{v}"} for v in variants]}
        for variant, subject, other in zip(
            variants,
            ["processUniqueId", "simulationUniqueId"],
            ["simulationUniqueId", "processUniqueId"],
            strict=True,
        ):
            whole = document["components"]["schemas"][variant]
            assert subject in whole["required"] and other not in whole["properties"]
            assert whole["additionalProperties"] is False
            # every field of the type is there: a generated client loses none of them
            assert set(whole["properties"]) | {other} == set(
                model.model_json_schema(by_alias=True)["properties"]
            )
        assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == [
            "partnerUniqueID"
        ]
        # No top-level oneOf: generators would split the model into subject-only classes.
        component = document["components"]["schemas"][model.__name__]
        assert "oneOf" not in component
        assert component["description"].startswith(
            "Exactly one of processUniqueId or simulationUniqueId is required"
        )


async def test_operation_ids_are_unique(client: TestClient) -> None:
    document = await spec(client)
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


async def test_documented_security_is_what_the_service_enforces(client: TestClient) -> None:
    """Called without a token, an operation documented as needing one answers 401 (before
    looking at its path); one documented as public does not."""
    document = await spec(client)
    public = set()
    for method, path, operation in operations(document):
        # Path values that are all invalid: the token is checked before the path is parsed.
        response = await client.request(method.upper(), re.sub(r"{\w+}", "not-valid", path))
        if operation["security"] == []:
            public.add(path)
            assert response.status != 401, (method, path)
        else:
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert response.status == 401, (method, path)
            assert "401" in operation["responses"], (method, path)
    assert {"/health/live", "/health/ready", "/openapi.json", "/docs"} <= public
    assert "/partners" not in public
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_bodies_come_from_the_models_the_views_use(client: TestClient) -> None:
    document = await spec(client)
    schemas = document["components"]["schemas"]
    put = document["paths"]["/partners/{partnerUniqueID}/callbacks/{notificationType}"]["put"]
    ref = put["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    update = schemas[ref.rsplit("/", 1)[-1]]
    model_fields = {info.alias for info in CallbackUpdate.model_fields.values()}
    assert set(update["properties"]) == model_fields
    assert update["required"] == ["url"]
    assert update["additionalProperties"] is False
    assert update["properties"]["url"]["maxLength"] == 2048
    create = schemas["PartnerCreate"]
    assert set(create["properties"]) == {i.alias for i in PartnerCreate.model_fields.values()}
    assert create["properties"]["name"]["maxLength"] == 200
    assert {"201", "200", "400", "404", "413", "415"} <= set(put["responses"])
    problem = put["responses"]["400"]["content"]["application/problem+json"]["schema"]
    assert problem["$ref"].endswith("/ProblemDetails")


async def test_list_documents_its_pagination(client: TestClient) -> None:
    document = await spec(client)
    listing = document["paths"]["/partners/{partnerUniqueID}/callbacks"]["get"]
    query = {p["name"]: p["schema"] for p in listing["parameters"] if p["in"] == "query"}
    assert query["limit"]["minimum"] == 1
    assert query["limit"]["maximum"] == 100
    assert query["limit"]["default"] == 20
    assert query["offset"]["minimum"] == 0


async def test_docs_page_loads_its_assets_from_the_service(client: TestClient) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/docs/assets/swagger-ui-bundle.js" in assets
    assert "/openapi.json" in page
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the service (no CDN)"
        loaded = await client.get(asset)
        assert loaded.status == 200, asset
        assert len(await loaded.read()) > 1000, asset
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in await bundle.text()
