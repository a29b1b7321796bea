"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.routes import ROUTES, Route
from service.core.notification_types import NOTIFICATION_TYPES, SUBJECT_FIELDS
from service.core.schemas import ProblemDetails

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)}")
TYPE_PARAM = "{notificationTypeID}"
_PARAM_SCHEMAS = {
    "partnerUniqueID": {"type": "string", "format": "uuid"},
    "notificationId": {"type": "string", "format": "uuid"},
    "operatorEventId": {"type": "string", "format": "uuid"},
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
    for model in NOTIFICATION_TYPES.values():
        defs |= _subject_variants(model.__name__, defs[model.__name__])
    return defs


def _variant_name(model_name: str, subject: str) -> str:
    return model_name + "By" + subject.removesuffix("UniqueId").capitalize()


def _subject_variants(model_name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The payload once per subject, each with every field: its subject required and the other
    one absent. Echo's body is one of them, so the document says the exactly-one rule in a
    form that validators check and client generators keep whole (a top-level oneOf of bare
    subjects made generators drop every other field)."""
    variants = {}
    for subject in SUBJECT_FIELDS:
        variant = copy.deepcopy(schema)
        for other in SUBJECT_FIELDS:
            if other != subject:
                del variant["properties"][other]
        variant["required"] = [subject, *schema.get("required", [])]
        variant["title"] = _variant_name(model_name, subject)
        variant["description"] = f"A {model_name} about a {subject.removesuffix('UniqueId')}."
        variants[variant["title"]] = variant
    return variants


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


def _parameters(item: Route, path: str) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": _PARAM_SCHEMAS[name]}
        for name in _PATH_PARAM.findall(path)
    ]
    params += [
        {
            "name": name,
            "in": "header",
            "required": False,
            # What the view accepts: 1 to 200 printable characters (ASCII ones in HTTP).
            "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]+$"},
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
    if _PATH_PARAM.search(item.template) or item.query or item.body or item.raw_body:
        responses.setdefault("400", _problem("Invalid request"))
    if item.body or item.raw_body:
        responses.setdefault("413", _problem("Body over 256 KiB"))
        responses.setdefault("415", _problem("Body is not JSON"))
    return responses


def _request_body(item: Route, payload: type[BaseModel] | None) -> dict[str, Any] | None:
    if payload is not None:
        variants = [
            {"$ref": REF.format(model=_variant_name(payload.__name__, s))} for s in SUBJECT_FIELDS
        ]
        return {"required": True, **_json({"oneOf": variants})}
    if item.body is None:
        return None
    return {"required": True, **_json({"$ref": REF.format(model=item.body.__name__)})}


def _operation(item: Route, path: str, payload: type[BaseModel] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": item.name,
        "summary": item.summary,
        "tags": [item.tag],
        "parameters": _parameters(item, path),
        "responses": _responses(item),
    }
    if payload is not None:
        operation["operationId"] = f"{item.name}_{_snake(payload.__name__)}"
        operation["summary"] = f"{item.summary} ({payload.__name__})"
    if item.scope:
        operation["description"] = f"Scope: `{item.scope}`"
    operation["security"] = [{"bearer": []}] if item.authenticated else []
    body = _request_body(item, payload)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _operations(item: Route) -> list[tuple[str, dict[str, Any]]]:
    """The documented (path, operation) pairs of a route. Echo takes a different body for each
    notification type, so it is documented once per type, at the path with the type filled
    in: a client generated from the document then cannot send one type's body to another's
    path. The route itself keeps serving ``{notificationTypeID}``."""
    if not (item.raw_body and TYPE_PARAM in item.template):
        return [(item.template, _operation(item, item.template))]
    return [
        (path, _operation(item, path, model))
        for type_id, model in sorted(NOTIFICATION_TYPES.items())
        for path in [item.template.replace(TYPE_PARAM, str(type_id))]
    ]


# Response fields whose value a later operation takes as a path parameter.
_LINKED_FIELDS = {
    "partnerUniqueId": "partnerUniqueID",
    "notificationType": "notificationType",
    "notificationId": "notificationId",
}


def _response_models(item: Route) -> dict[int, type[BaseModel]]:
    models = dict(item.status_models)
    if item.response is not None:
        models.setdefault(item.status, item.response)
    return {status: model for status, model in models.items() if 200 <= status < 300}


def _link_sources(model: type[BaseModel], request_path: str) -> dict[str, str]:
    """Path parameters a next operation can take: the response's ids, then the request's."""
    sources = {name: f"$request.path.{name}" for name in _PATH_PARAM.findall(request_path)}
    fields = {info.alias or name for name, info in model.model_fields.items()}
    for field_name, param in _LINKED_FIELDS.items():
        if field_name in fields:
            sources[param] = f"$response.body#/{field_name}"
    return sources


def _links(
    model: type[BaseModel], request_path: str, targets: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """OpenAPI links from a response to each operation whose path takes an id the response
    holds, so that stateful tests (and readers) can chain calls with real ids. Parameters that
    neither the response nor the request supply are left to the caller."""
    sources = _link_sources(model, request_path)
    from_response = {p for p, s in sources.items() if s.startswith("$response")}
    links = {}
    for path, operation in targets:
        wanted = set(_PATH_PARAM.findall(path))
        if wanted & from_response:
            links[operation["operationId"]] = {
                "operationId": operation["operationId"],
                "parameters": {name: sources[name] for name in sorted(wanted & sources.keys())},
            }
    return links


def _add_links(documented: list[tuple[Route, str, dict[str, Any]]]) -> None:
    targets = [(path, operation) for _, path, operation in documented]
    for item, path, operation in documented:
        for status, model in _response_models(item).items():
            links = _links(model, path, targets)
            if links:
                operation["responses"][str(status)]["links"] = links


def openapi_document(version: str) -> dict[str, Any]:
    documented = [
        (item, path, operation) for item in ROUTES for path, operation in _operations(item)
    ]
    _add_links(documented)
    paths: dict[str, dict[str, Any]] = {}
    for item, path, operation in documented:
        paths.setdefault(path, {})[item.method.lower()] = operation
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
