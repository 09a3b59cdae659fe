"""Domain errors to HTTP, in one place. Every error body is ``{"detail": "...", "error": code}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors to their codes; anything unexpected to a logged 500 with a request id."""
    app.add_exception_handler(LoralabError, _domain_error)
    app.add_exception_handler(Exception, _unexpected)
