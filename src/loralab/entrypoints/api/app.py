"""The platform API: sign-in, jobs, datasets, models, predictions, audit, health, metrics.

``create_app(settings)`` refuses to build with a weak signing secret (outside dev_mode), brings
the database to the newest migration, creates the bootstrap admin if configured, and serves the
same prediction routes as ``loralab serve`` behind sign-in.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from sqlalchemy import text

from loralab.bootstrap import Services, build_services
from loralab.entrypoints.api.deps import get_current_user, services
from loralab.entrypoints.api.errors import install_error_handlers
from loralab.entrypoints.api.middleware import NO_TELEMETRY, install_common
from loralab.entrypoints.api.predict import predict_router
from loralab.entrypoints.api.routes import (
    audit,
    auth,
    datasets,
    experiments,
    jobs,
    models,
    progress,
    ui_support,
    users,
)
from loralab.entrypoints.api.schemas import HealthResponse, ModelHealth, errors
from loralab.entrypoints.api.serving_app import body_limit, serving_lifespan
from loralab.settings import Settings

DESCRIPTION = """Fine-tune and serve LoRA text classifiers, for many users at once.

Sign in with `POST /login`, then send `Authorization: Bearer <token>`. Roles: `admin`, `user`.
Users see and cancel only their own jobs; admins see everything; every change is audited."""


def create_app(settings: Settings, found: Services | None = None) -> FastAPI:
    """The platform app for ``settings`` (``found``: prebuilt services, for tests)."""
    from loralab.infra.migrate import upgrade_database
    from loralab.users.tokens import check_secret

    check_secret(settings.auth)
    upgrade_database(settings.db_url)
    found = found or build_services(settings)
    found.users.bootstrap_admin(settings.auth)

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
    install_common(app, found.metrics, max(body_limit(settings), settings.api.max_upload_bytes))
    from loralab.observability.jobs_table import register_platform_collectors

    verify_audit, every = found.audit.verify, settings.observability.audit_verify_seconds
    register_platform_collectors(found.metrics.registry, found.db, lambda: verify_audit().ok, every)
    install_error_handlers(app)
    for module in (auth, users, jobs, progress, experiments, datasets, models, audit, ui_support):
        app.include_router(module.router)
    app.include_router(
        predict_router(), dependencies=[Depends(get_current_user)], responses=errors(401)
    )

    @app.get("/health", tags=["monitoring"], summary="Database, broker and model status")
    def health(request: Request) -> HealthResponse:
        return platform_health(services(request))

    return app


def platform_health(found: Services) -> HealthResponse:
    """Each part's state; ``status`` is ok only when the database answers."""
    try:
        with found.db.session() as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as err:  # noqa: BLE001 - reported, not raised
        database = f"error: {type(err).__name__}"
    return HealthResponse(
        status="ok" if database == "ok" else "degraded",
        database=database,
        broker=broker_state(found.settings),
        model=ModelHealth.model_validate(found.predictions.health()),
    )


def broker_state(settings: Settings) -> str:
    import redis

    try:
        client = redis.Redis.from_url(settings.queue.broker_url, socket_timeout=0.5)
        client.ping()
        return "ok"
    except Exception as err:  # noqa: BLE001 - reported, not raised
        return f"unreachable ({type(err).__name__})"
