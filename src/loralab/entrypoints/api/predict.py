"""Routes of the prediction service: ``GET /health`` (and ``/health/details`` for monitoring),
``POST /predict``, ``POST /predict/batch``.

The standalone service (``loralab serve``) mounts them as they are; the platform API mounts the
same router behind sign-in.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from loralab.entrypoints.api.middleware import monitoring_client
from loralab.entrypoints.api.schemas import (
    BatchRequest,
    BatchResponse,
    ModelHealth,
    PredictRequest,
    PredictResponse,
    ServingStatus,
    errors,
)
from loralab.errors import PermissionDenied
from loralab.serving.service import PredictionService


def service_of(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.predictions
    return service


def health_router() -> APIRouter:
    """``/health`` for anyone (up, and whether a model is loaded); ``/health/details`` (which
    versions, device, mode) for monitoring clients only, like ``/metrics``."""
    router = APIRouter(tags=["prediction"])

    @router.get("/health", summary="Service status (anyone)")
    def health(request: Request) -> ServingStatus:
        found = service_of(request).health()
        return ServingStatus(status=found["status"], model_loaded=found["model_loaded"])

    @router.get(
        "/health/details",
        summary="Model versions, device and mode (monitoring clients, like /metrics)",
        responses=errors(403),
    )
    def health_details(request: Request) -> ModelHealth:
        if not monitoring_client(request):
            raise PermissionDenied(
                "health details are for monitoring: send the observability.metrics_token "
                "as a bearer token"
            )
        return ModelHealth.model_validate(service_of(request).health())

    return router


def predict_router() -> APIRouter:
    router = APIRouter(tags=["prediction"], responses=errors(404, 413, 422))

    @router.post("/predict", summary="Classify one text")
    async def predict(body: PredictRequest, request: Request) -> PredictResponse:
        answer = await service_of(request).predict(body.text, body.model)
        return PredictResponse.model_validate(answer)

    @router.post("/predict/batch", summary="Classify many texts")
    async def predict_batch(body: BatchRequest, request: Request) -> BatchResponse:
        answer = await service_of(request).predict_batch(body.texts, body.model)
        return BatchResponse.model_validate(answer)

    return router
