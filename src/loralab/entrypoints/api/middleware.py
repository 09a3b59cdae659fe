"""What every loralab HTTP app shares: request ids, a body-size cap, HTTP metrics, /metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from loralab.observability.logs import bind_request
from loralab.observability.metrics import CONTENT_TYPE, Metrics

REQUEST_ID = "X-Request-ID"
REQUEST_ID_FORM = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a client's id is kept only if plain
# Our metrics are Prometheus (GET /metrics); FastAPI's own OpenTelemetry hooks cost time per
# request for nothing unless a collector is configured.
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


def _refused(status: int, detail: str, code: str) -> Response:
    return JSONResponse({"detail": detail, "error": code}, status_code=status)


def route_of(request: Request) -> str:
    """The route template (``/task/{task_id}``), never the raw path: bounded label values."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def install_common(app: FastAPI, metrics: Metrics, max_body_bytes: int) -> None:
    """Request ids, body cap (413 before parsing), HTTP metrics and ``GET /metrics``."""
    app.state.metrics = metrics

    @app.middleware("http")
    async def _common(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get(REQUEST_ID, "")
        request.state.request_id = incoming if REQUEST_ID_FORM.match(incoming) else uuid.uuid4().hex
        bind_request(request.state.request_id)  # every log line of this request carries it
        length = request.headers.get("content-length")
        response: Response
        if length is not None and not length.isdigit():
            response = _refused(400, "Content-Length is not a number", "bad_request")
        elif length is not None and int(length) > max_body_bytes:
            response = _refused(413, f"request body over {max_body_bytes} bytes", "too_large")
        else:
            start = time.perf_counter()
            response = await call_next(request)
            metrics.http_latency.labels(request.method, route_of(request)).observe(
                time.perf_counter() - start
            )
        route = route_of(request)
        metrics.http_requests.labels(request.method, route, response.status_code).inc()
        if response.status_code >= 400 and request.url.path.startswith("/predict"):
            metrics.predict_errors.labels(str(response.status_code)).inc()
        response.headers[REQUEST_ID] = request.state.request_id
        return response

    @app.get(
        "/metrics",
        tags=["monitoring"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)
