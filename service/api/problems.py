"""Failures as RFC 9457 problem+json responses: domain errors, HTTP errors, a database that
is down, and anything unexpected (logged with its traceback, answered without details)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from service.core.database import DATABASE_DOWN
from service.core.errors import Problem, ServiceUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem_response(problem: Problem) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://callbackhub.dev/problems/{problem.slug()}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    response = web.json_response(body, status=problem.status, content_type=PROBLEM_JSON)
    if problem.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


_HTTP_PROBLEMS = {
    404: ("Not Found", "no such resource"),
    405: ("Method Not Allowed", "this method is not allowed on this resource"),
    413: ("Payload Too Large", "the request body is too large"),
}


def _from_http_exception(error: web.HTTPException) -> web.Response:
    title, detail = _HTTP_PROBLEMS.get(error.status, (error.reason, error.reason))
    problem = Problem(detail)
    problem.status = error.status  # type: ignore[misc]
    problem.title = title  # type: ignore[misc]
    response = problem_response(problem)
    if error.status == 405 and "Allow" in error.headers:
        response.headers["Allow"] = error.headers["Allow"]
    return response


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _from_http_exception(error)
    except DATABASE_DOWN as error:
        log.warning("database unavailable: %s", type(error).__name__)
        return problem_response(ServiceUnavailable())
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(Problem("an internal error occurred; nothing was changed"))
