"""Errors to HTTP, in one place. Every error body is ``{"detail": ..., "error": code}``.

Domain errors map to their codes; a request FastAPI refuses (a field out of its limits, a
malformed body) is a 422 whose ``detail`` lists ``{loc, msg, type}`` issues, on the audit record
when the route needs sign-in; Starlette's own refusals (an unknown path, a malformed multipart
body) keep their status with the same body shape. :func:`document_errors` declares, on every
route, the codes its dependencies can answer with, so ``/openapi.json`` tells the truth.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

from loralab.audit.refused import record_refused
from loralab.entrypoints.api.deps import get_current_user, request_context, services
from loralab.entrypoints.api.schemas import ERROR_TEXT, ErrorBody, InvalidBody
from loralab.errors import (
    Conflict,
    InvalidInput,
    LoralabError,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    StorageFull,
    TooManyRequests,
)

log = logging.getLogger("loralab.api")
REF = "#/components/schemas/"

STATUS: dict[type[LoralabError], tuple[int, str]] = {
    InvalidInput: (422, "invalid_input"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    PermissionDenied: (403, "forbidden"),
    NotAuthenticated: (401, "not_authenticated"),
    TooManyRequests: (429, "too_many_requests"),
    PayloadTooLarge: (413, "too_large"),
    StorageFull: (507, "storage_full"),
}


def status_of(err: LoralabError) -> tuple[int, str]:
    for kind in type(err).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500, "error"


async def _domain_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, LoralabError)
    status, code = status_of(err)
    headers: dict[str, str] = {}
    if isinstance(err, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(err, TooManyRequests) and err.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(err.retry_after)))
    return JSONResponse({"detail": str(err), "error": code}, status_code=status, headers=headers)


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    """A bug, never the client's input: logged with its request id, answered without details."""
    request_id = getattr(request.state, "request_id", None)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
    return JSONResponse(
        {"detail": f"internal error (request id {request_id})", "error": "internal"},
        status_code=500,
        headers={"X-Request-ID": str(request_id)} if request_id else None,
    )


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


async def _http_error(request: Request, err: Exception) -> JSONResponse:
    """Starlette's refusals (unknown path, wrong method, malformed multipart) in our shape."""
    assert isinstance(err, HTTPException)
    code = HTTP_CODES.get(err.status_code, f"http_{err.status_code}")
    return JSONResponse(
        {"detail": str(err.detail), "error": code},
        status_code=err.status_code,
        headers=err.headers,
    )


def _issues(err: RequestValidationError) -> list[dict[str, Any]]:
    """``{loc, msg, type}`` per refused field; the refused value itself is not echoed (it may
    be a password, or megabytes of text)."""
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in issue.get("loc", ())],
            "msg": str(issue.get("msg", "")),
            "type": str(issue.get("type", "")),
        }
        for issue in err.errors()
    ]


async def _invalid_request(request: Request, err: Exception) -> JSONResponse:
    """422 naming the refused fields; on the audit record when the route needs sign-in."""
    assert isinstance(err, RequestValidationError)
    issues = _issues(err)
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and _needs_sign_in(route):
        reason = "; ".join(
            f"{'.'.join(str(p) for p in i['loc'])}: {i['msg']}" for i in issues
        )  # fmt: skip
        record_refused(
            services(request).audit,
            services(request).db,
            request_context(request),
            actor=_caller(request),
            method=request.method,
            route=route.path,
            status=422,
            reason=reason,
        )
    return JSONResponse({"detail": issues, "error": "invalid_input"}, status_code=422)


def _needs_sign_in(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is get_current_user:
            return True
        stack.extend(dependency.dependencies)
    return False


def _caller(request: Request) -> Any:
    """Who sent a refused request: the signed-in actor, when its token is valid."""
    actor = getattr(request.state, "actor", None)
    if actor is not None:
        return actor
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return services(request).users.authenticate(token.strip())
    except LoralabError:
        return None


def _declare(operation: dict[str, Any], code: int, model: str) -> None:
    answers = operation.setdefault("responses", {})
    if str(code) not in answers:
        answers[str(code)] = {
            "description": ERROR_TEXT[code],
            "content": {"application/json": {"schema": {"$ref": f"{REF}{model}"}}},
        }


def _answers(operation: dict[str, Any]) -> dict[int, str]:
    """The error codes an operation can answer with whatever it declares itself: sign-in
    (401), a path naming something that may not exist (404), parameters or a body (422), a
    body over the cap (413) or one that does not parse (400)."""
    codes: dict[int, str] = {}
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody", {}).get("content", {})
    if operation.get("security"):
        codes[401] = "ErrorBody"
    if any(p.get("in") == "path" for p in parameters):
        codes[404] = "ErrorBody"
    if parameters or body:
        codes[422] = "InvalidBody"
    if body:  # over the cap; or not parsing at all (a broken form, JSON nested too deep)
        codes[413] = codes[400] = "ErrorBody"
    return codes


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Declare on every operation of an OpenAPI ``document`` the error codes it can answer
    with, in the one error shape: FastAPI's own default 422 (``HTTPValidationError``) names
    another shape than the answers have, so it is replaced by ``InvalidBody``."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for shape in (ErrorBody, InvalidBody):
        if shape.__name__ not in components:
            _, found = models_json_schema([(shape, "serialization")], ref_template=REF + "{model}")
            components.update(found.get("$defs", {}))
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            answers = operation.setdefault("responses", {})
            default = answers.get("422", {}).get("content", {}).get("application/json", {})
            if default.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del answers["422"]
            for code, model in _answers(operation).items():
                _declare(operation, code, model)
    text = json.dumps(document.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"{REF}{unused}" not in text:
            components.pop(unused, None)
    return document


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors to their codes; anything unexpected to a logged 500 with a request id;
    the OpenAPI document declares every route's error codes (:func:`document_errors`, run
    when the document is first built, so routers included later are covered)."""
    app.add_exception_handler(LoralabError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
