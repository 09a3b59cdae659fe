"""The standalone prediction service (``loralab serve`` / ``make serve``).

No sign-in: it binds 127.0.0.1 by default and is meant to sit behind the platform API or a
gateway. The platform API mounts the same routes behind sign-in. Its anonymous ``/health`` names
no model; ``/metrics`` and ``/health/details`` want the ``observability.metrics_token`` bearer
token when one is set, and a loopback peer when not (as on the platform API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from loralab.entrypoints.api.errors import install_error_handlers
from loralab.entrypoints.api.middleware import NO_TELEMETRY, MetricsAccess, install_common
from loralab.entrypoints.api.predict import health_router, predict_router
from loralab.errors import LoralabError
from loralab.observability.metrics import Metrics
from loralab.serving.service import PredictionService
from loralab.settings import Settings

log = logging.getLogger("loralab.serving")


async def refresh_models(service: PredictionService, every_s: float) -> None:
    """Re-resolve the served alias every few seconds: promotions apply without a restart.

    Loading runs on the model thread, like predicting: torch work from a second thread would
    start a second OpenMP thread team competing for the same cores (measured: ~50% slower).
    """
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every_s)
        try:
            await loop.run_in_executor(service.executor, service.refresh)
        except LoralabError as err:
            log.warning("model refresh failed: %s", err)


@contextlib.asynccontextmanager
async def serving_lifespan(service: PredictionService, every_s: float) -> AsyncIterator[None]:
    """Pre-load the default model, keep it fresh, and stop cleanly."""
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(service.executor, service.load_default)
    except LoralabError as err:  # start anyway: /health says why, named models still work
        log.warning("no default model loaded: %s", err)
    task = asyncio.create_task(refresh_models(service, every_s))
    try:
        yield
    finally:
        task.cancel()
        service.close()


def body_limit(settings: Settings) -> int:
    serving = settings.serving
    return serving.max_batch_texts * (serving.max_text_chars * 4 + 64) + 65_536


def create_serving_app(
    settings: Settings,
    model: str | None = None,
    experiment: str | None = None,
    service: PredictionService | None = None,
) -> FastAPI:
    """The prediction service app; ``model`` or ``experiment`` choose what it serves."""
    metrics = service.metrics if service else Metrics()
    service = service or PredictionService(
        settings, metrics=metrics, model=model, experiment=experiment
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with serving_lifespan(service, settings.serving.refresh_seconds):
            yield

    app = FastAPI(
        title="loralab prediction service",
        description="Classify texts with registered LoRA models. Models: NAME@production, "
        "NAME@staging, NAME@VERSION or a run id.",
        version="0.1.0",
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
    )
    app.state.predictions = service
    token = settings.observability.metrics_token
    install_common(
        app,
        metrics,
        body_limit(settings),
        metrics_access=MetricsAccess(token.get_secret_value() if token else None),
    )
    install_error_handlers(app)
    app.include_router(health_router())
    app.include_router(predict_router())
    return app
