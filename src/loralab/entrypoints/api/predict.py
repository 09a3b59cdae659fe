"""Routes of the prediction service: ``GET /health``, ``POST /predict``, ``POST /predict/batch``.

The standalone service (``loralab serve``) mounts them as they are; the platform API mounts the
same router behind sign-in.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from loralab.entrypoints.api.schemas import (
    BatchRequest,
    BatchResponse,
    ModelHealth,
    PredictRequest,
    PredictResponse,
    errors,
)
from loralab.serving.service import PredictionService


def service_of(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.predictions
    return service


def health_router() -> APIRouter:
    router = APIRouter(tags=["prediction"])

    @router.get("/health", summary="Service and model status")
    def health(request: Request) -> ModelHealth:
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
