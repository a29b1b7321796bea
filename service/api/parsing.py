"""Turning requests into validated values: strict JSON bodies, query strings, path values."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from service.api.app_keys import SETTINGS
from service.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from service.core.notification_types import SUBJECT_FIELDS

ModelT = TypeVar("ModelT", bound=BaseModel)


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``{"field", "message"}`` pairs, fields named as the API names them."""
    found = []
    for item in error.errors(include_url=False):
        if item["type"] == "exactly_one_subject":
            found += [{"field": name, "message": item["msg"]} for name in SUBJECT_FIELDS]
            continue
        field = ".".join(str(part) for part in item["loc"]) or "body"
        found.append({"field": field, "message": item["msg"]})
    return found


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise ValueError("strings must not contain NUL characters")
        result[key] = value
    return result


# Made once: json.loads(..., object_pairs_hook=...) builds a new decoder on every call.
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_reject_duplicates)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NUL characters, bounded depth and numbers."""
    try:
        return _STRICT_JSON.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except ValueError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None


async def read_json_body(request: web.Request) -> bytes:
    """The raw body of a JSON request, refused when it is too large or not JSON."""
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType()
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes") from None


async def json_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The body as ``model``, validated as strictly as the schema reads: no ``0`` for a
    boolean, no number for a string (JSON's own strings still carry UUIDs and times)."""
    raw = await read_json_body(request)
    parse_json(raw)  # the syntax checks first: duplicate keys, NUL, depth, UTF-8
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        raise ValidationFailed(errors=field_errors(error)) from None


def validate(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(errors=field_errors(error)) from None


def query(request: web.Request, model: type[ModelT]) -> ModelT:
    unknown = set(request.query) - _query_names(model)
    if unknown:
        raise ValidationFailed(
            errors=[
                {"field": name, "message": "unknown query parameter"} for name in sorted(unknown)
            ]
        )
    return validate(model, dict(request.query))


def _query_names(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def path_uuid(request: web.Request, name: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise ValidationFailed(errors=[{"field": name, "message": "must be a UUID"}]) from None


def path_int(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise ValidationFailed(errors=[{"field": name, "message": "must be a positive integer"}])
    return int(value)
