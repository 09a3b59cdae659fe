"""The platform API: sign-in, jobs, datasets, models, predictions, audit, health, metrics.

``create_app(settings)`` refuses to build with a weak signing secret (outside dev_mode), brings
the database to the newest migration, creates the bootstrap admin if configured, anchors the
audit chain where this machine has no anchor yet, and serves the same prediction routes as
``loralab serve`` behind sign-in.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import Depends, FastAPI, Request, Response
from sqlalchemy import text

from loralab.bootstrap import Services, build_services, prepare_database
from loralab.entrypoints.api.deps import get_current_user, limited, services
from loralab.entrypoints.api.errors import install_error_handlers
from loralab.entrypoints.api.middleware import NO_TELEMETRY, MetricsAccess, install_common
from loralab.entrypoints.api.predict import predict_router
from loralab.entrypoints.api.routes import (
    audit,
    auth,
    datasets,
    experiments,
    jobs,
    models,
    progress,
    sweeps,
    ui_support,
    users,
)
from loralab.entrypoints.api.schemas import HealthResponse, LiveResponse, errors
from loralab.entrypoints.api.serving_app import body_limit, serving_lifespan
from loralab.settings import Settings

DESCRIPTION = """Fine-tune and serve LoRA text classifiers, for many users at once.

Sign in with `POST /login`, then send `Authorization: Bearer <token>`. Roles: `admin`, `user`.
Users see and cancel only their own jobs; admins see everything; every change is audited."""


def create_app(settings: Settings, found: Services | None = None) -> FastAPI:
    """The platform app for ``settings`` (``found``: prebuilt services, for tests)."""
    from loralab.users.tokens import check_secret

    check_secret(settings.auth)
    prepare_database(settings)  # migrations, then the card folder into a registry database
    found = found or build_services(settings)
    found.users.bootstrap_admin(settings.auth)
    found.audit.anchor_current_head()  # a new machine's anchor starts at today's head

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with serving_lifespan(found.predictions, settings.serving.refresh_seconds):
            yield
        found.db.dispose()

    app = FastAPI(
        title="loralab platform API",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
    )
    app.state.services = found
    app.state.predictions = found.predictions
    token = settings.observability.metrics_token
    install_common(
        app,
        found.metrics,
        max(body_limit(settings), settings.api.max_upload_bytes),
        trusted_proxies=settings.api.trusted_proxies,
        metrics_access=MetricsAccess(token.get_secret_value() if token else None),
    )
    from loralab.observability.jobs_table import register_platform_collectors

    verify_audit, every = found.audit.verify, settings.observability.audit_verify_seconds
    register_platform_collectors(found.metrics.registry, found.db, lambda: verify_audit().ok, every)
    install_error_handlers(app)
    routers = (
        auth,
        users,
        jobs,
        sweeps,
        progress,
        experiments,
        datasets,
        models,
        audit,
        ui_support,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(
        predict_router(),
        dependencies=[Depends(get_current_user), Depends(limited("predict"))],
        responses=errors(401, 429),
    )
    install_health(app)
    return app


def install_health(app: FastAPI) -> None:
    """``/health`` and ``/health/ready``: readiness (503 from /health/ready when the
    database or the broker is down); ``/health/live``: the process answers. Anonymous, so
    they name no versions and no errors."""

    @app.get("/health", tags=["monitoring"], summary="Readiness, always 200 (status says)")
    def health(request: Request) -> HealthResponse:
        return platform_health(services(request))

    @app.get(
        "/health/ready",
        tags=["monitoring"],
        summary="Readiness: 503 when the database or the broker is down",
        responses={503: {"description": "Not ready", "model": HealthResponse}},
    )
    def ready(request: Request, response: Response) -> HealthResponse:
        answer = platform_health(services(request))
        if answer.status != "ok":
            response.status_code = 503
        return answer

    @app.get("/health/live", tags=["monitoring"], summary="Liveness: the process answers")
    def live() -> LiveResponse:
        return LiveResponse(status="ok")


def platform_health(found: Services) -> HealthResponse:
    """``ok`` only when the database and the broker both answer."""
    database: Literal["ok", "down"]
    try:
        with found.db.session() as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # noqa: BLE001 - reported, not raised
        database = "down"
    broker = broker_state(found.settings)
    return HealthResponse(
        status="ok" if database == broker == "ok" else "degraded",
        database=database,
        broker=broker,
    )


def broker_state(settings: Settings) -> Literal["ok", "down"]:
    """ok when the broker's Redis answers a PING within half a second, else down."""
    import redis

    try:
        client = redis.Redis.from_url(
            settings.queue.broker_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        client.ping()
        return "ok"
    except Exception:  # noqa: BLE001 - reported, not raised
        return "down"
