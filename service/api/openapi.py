"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.routes import ROUTES, Route
from service.core.notification_types import NOTIFICATION_TYPES
from service.core.schemas import ProblemDetails

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)}")
_PARAM_SCHEMAS = {
    "partnerUniqueID": {"type": "string", "format": "uuid"},
    "notificationId": {"type": "string", "format": "uuid"},
    "notificationType": {"type": "integer", "enum": sorted(NOTIFICATION_TYPES)},
    "notificationTypeID": {"type": "integer", "enum": sorted(NOTIFICATION_TYPES)},
}


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ProblemDetails": ProblemDetails}
    found |= {model.__name__: model for model in NOTIFICATION_TYPES.values()}
    for item in ROUTES:
        for model in (item.body, item.response, *item.status_models.values()):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


def _component_schemas() -> dict[str, Any]:
    pairs = [(m, "validation") for m in _models()] + [(m, "serialization") for m in _models()]
    _, schema = models_json_schema(pairs, ref_template=REF, by_alias=True)  # type: ignore[arg-type]
    defs: dict[str, Any] = schema.get("$defs", {})
    return defs


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One parameter per field; the schemas the fields refer to (enums) are written inline."""
    schema = model.model_json_schema(by_alias=True, ref_template="{model}")
    return [
        {"name": name, "in": "query", "required": False, "schema": _inline(prop, schema)}
        for name, prop in schema["properties"].items()
    ]


def _inline(node: Any, schema: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(schema["$defs"][node["$ref"]], schema)
        return {key: _inline(value, schema) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, schema) for value in node]
    return node


def _parameters(item: Route) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": _PARAM_SCHEMAS[name]}
        for name in _PATH_PARAM.findall(item.path)
    ]
    params += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
        }
        for name in item.headers
    ]
    if item.query is not None:
        params += _query_parameters(item.query)
    return params


def _json(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        **_json({"$ref": REF.format(model="ProblemDetails")}, "application/problem+json"),
    }


def _responses(item: Route) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success"}
    if item.response is not None:
        success.update(_json({"$ref": REF.format(model=item.response.__name__)}))
    elif item.media_type != "application/json":
        success.update(_json({"type": "string"}, item.media_type))
    responses: dict[str, Any] = {str(item.status): success}
    for status, description in item.extra_statuses.items():
        if status in item.status_models:
            model = item.status_models[status].__name__
            responses[str(status)] = {
                "description": description,
                **_json({"$ref": REF.format(model=model)}),
            }
        elif 200 <= status < 300:
            responses[str(status)] = {**success, "description": description}
        else:
            responses[str(status)] = _problem(description)
    if item.authenticated:
        responses.setdefault("401", _problem("Missing, malformed, expired or badly signed token"))
        responses.setdefault("403", _problem("The token lacks the scope or the partner"))
    if _PATH_PARAM.search(item.path) or item.query or item.body or item.raw_body:
        responses.setdefault("400", _problem("Invalid request"))
    if item.body or item.raw_body:
        responses.setdefault("413", _problem("Body over 256 KiB"))
        responses.setdefault("415", _problem("Body is not JSON"))
    return responses


def _request_body(item: Route) -> dict[str, Any] | None:
    if item.body is not None:
        return {"required": True, **_json({"$ref": REF.format(model=item.body.__name__)})}
    if item.raw_body:
        description = (
            "The notification payload; its schema depends on the type (GET /notification-types)"
        )
        payloads = [{"$ref": REF.format(model=m.__name__)} for m in NOTIFICATION_TYPES.values()]
        return {"required": True, "description": description, **_json({"anyOf": payloads})}
    return None


def _operation(item: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": item.name,
        "summary": item.summary,
        "tags": [item.tag],
        "parameters": _parameters(item),
        "responses": _responses(item),
    }
    if item.scope:
        operation["description"] = f"Scope: `{item.scope}`"
    operation["security"] = [{"bearer": []}] if item.authenticated else []
    body = _request_body(item)
    if body is not None:
        operation["requestBody"] = body
    return operation


def openapi_document(version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for item in ROUTES:
        paths.setdefault(item.path, {})[item.method.lower()] = _operation(item)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callbackhub",
            "version": version,
            "description": "Partner callbacks: register URLs, emit notifications, "
            "read the delivery log.",
        },
        "paths": paths,
        "components": {
            "schemas": _component_schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
