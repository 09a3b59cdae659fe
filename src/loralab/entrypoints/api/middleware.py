"""What every loralab HTTP app shares: request ids, the client's address, a body-size cap,
refusal of JSON text that no database or answer can hold, HTTP metrics and ``/metrics``."""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from loralab.entrypoints.api.schemas import ErrorBody
from loralab.observability.logs import bind_request
from loralab.observability.metrics import CONTENT_TYPE, Metrics

REQUEST_ID = "X-Request-ID"
REQUEST_ID_FORM = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a client's id is kept only if plain
# Our metrics are Prometheus (GET /metrics); FastAPI's own OpenTelemetry hooks cost time per
# request for nothing unless a collector is configured.
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}
# \uD800-\uDFFF or \u0000 escapes: only then is the body parsed here to look closer
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    """The proxies named in settings as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _forwarded_chain(headers: Any) -> list[str]:
    """Client addresses the proxies appended, oldest first (Forwarded wins over XFF)."""
    forwarded = headers.get("forwarded")
    if forwarded:
        found = re.findall(r'for="?\[?([^\]";,]+)', forwarded, flags=re.IGNORECASE)
        return [part.strip() for part in found]
    return [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]


def client_address(peer: str | None, headers: Any, trusted: Sequence[Network]) -> str | None:
    """Who the client is: the connection's peer, unless that peer is a trusted proxy; then
    the nearest address in the forwarding chain that is not a trusted proxy. Headers from
    anyone else are ignored: any client can write them."""
    if peer is None or not trusted or not _is_trusted(peer, trusted):
        return peer
    chain = _forwarded_chain(headers)
    for address in reversed(chain):
        if not _is_trusted(address, trusted):
            return address
    return chain[0] if chain else peer


def refused_text(value: Any) -> str | None:
    """Why a parsed JSON value holds text that cannot be stored or answered: a lone UTF-16
    surrogate (not Unicode) or a NUL character (PostgreSQL text refuses it); None if fine."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a JSON string holds a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a JSON string holds a lone UTF-16 surrogate (\\ud800-\\udfff): not Unicode"
    return None


def check_json_body(body: bytes) -> str | None:
    """Why a JSON request body is refused before parsing (422), or None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"request body: not valid UTF-8 (byte {err.start})"
    if not _SUSPECT_ESCAPE.search(body):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None  # malformed JSON: the route's validation names it
    why = refused_text(parsed)
    return f"request body: {why}" if why else None


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read ``/metrics``: a bearer ``token`` holder; without one, loopback peers."""

    token: str | None = None

    def allows(self, peer: str | None, authorization: str) -> bool:
        if self.token:
            scheme, _, given = authorization.partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            )
        return peer is not None and _is_trusted(peer, LOOPBACK)


LOOPBACK = trusted_networks(["127.0.0.0/8", "::1/128"])


def monitoring_client(request: Request) -> bool:
    """Whether ``request`` may read what is for monitoring (``/metrics``, health details):
    the app's :class:`MetricsAccess` decides; an app without one lets anyone."""
    access: MetricsAccess | None = getattr(request.app.state, "metrics_access", None)
    return access is None or access.allows(
        getattr(request.state, "peer", None), request.headers.get("authorization", "")
    )


def _refused(status: int, detail: str, code: str) -> Response:
    return JSONResponse({"detail": detail, "error": code}, status_code=status)


def route_of(request: Request) -> str:
    """The route template (``/task/{task_id}``), never the raw path: bounded label values."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


async def _refused_body(request: Request, max_body_bytes: int) -> Response | None:
    """413/400/422 for a body (or a URL) refused before any route sees it; None to go on."""
    if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
        return _refused(422, "the URL holds a NUL character (%00)", "invalid_input")
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        return _refused(400, "Content-Length is not a number", "bad_request")
    if length is not None and int(length) > max_body_bytes:
        return _refused(413, f"request body over {max_body_bytes} bytes", "too_large")
    if "json" in request.headers.get("content-type", "").lower():
        body = await request.body()  # cached: the route reads the same bytes
        if len(body) > max_body_bytes:
            return _refused(413, f"request body over {max_body_bytes} bytes", "too_large")
        why = check_json_body(body)
        if why is not None:
            return _refused(422, why, "invalid_input")
    return None


def install_common(
    app: FastAPI,
    metrics: Metrics,
    max_body_bytes: int,
    trusted_proxies: Sequence[str] = (),
    metrics_access: MetricsAccess | None = None,
) -> None:
    """Request ids, the client's address (``request.state.client``), body checks (before
    parsing), HTTP metrics and ``GET /metrics`` (``metrics_access``: who may read it; None:
    anyone)."""
    app.state.metrics = metrics
    app.state.metrics_access = metrics_access
    trusted = trusted_networks(trusted_proxies)

    @app.middleware("http")
    async def _common(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get(REQUEST_ID, "")
        request.state.request_id = incoming if REQUEST_ID_FORM.match(incoming) else uuid.uuid4().hex
        bind_request(request.state.request_id)  # every log line of this request carries it
        peer = request.client.host if request.client else None
        request.state.peer = peer
        request.state.client = client_address(peer, request.headers, trusted)
        refused = await _refused_body(request, max_body_bytes)
        response: Response
        if refused is not None:
            response = refused
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
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            403: {"description": "Not a monitoring client", "model": ErrorBody},
        },
    )
    def prometheus_metrics(request: Request) -> Response:
        if not monitoring_client(request):
            return _refused(
                403,
                "metrics are for monitoring: send the observability.metrics_token as a "
                "bearer token",
                "forbidden",
            )
        return Response(metrics.render(), media_type=CONTENT_TYPE)
