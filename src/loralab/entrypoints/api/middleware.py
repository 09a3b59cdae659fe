"""What every loralab HTTP app shares: request ids, a body-size cap, HTTP metrics, /metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from loralab.observability.metrics import CONTENT_TYPE, Metrics

REQUEST_ID = "X-Request-ID"
# Our metrics are Prometheus (GET /metrics); FastAPI's own OpenTelemetry hooks cost time per
# request for nothing unless a collector is configured.
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


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
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isascii() else None
        request.state.request_id = request_id or uuid.uuid4().hex
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            response: Response = JSONResponse(
                {"detail": f"request body over {max_body_bytes} bytes", "error": "too_large"},
                status_code=413,
            )
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

    @app.get("/metrics", tags=["monitoring"], summary="Prometheus metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)
