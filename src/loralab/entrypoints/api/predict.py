"""Routes of the prediction service: ``GET /health``, ``POST /predict``, ``POST /predict/batch``.

The standalone service (``loralab serve``) mounts them as they are; the platform API mounts the
same router behind sign-in.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from loralab.serving.service import PredictionService

MODEL_HELP = "NAME@production, NAME@staging, NAME@VERSION or a run id; empty: the served default"


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Great film, loved it!"}]},
    )
    text: str = Field(min_length=1, description="The text to classify.")
    model: str | None = Field(default=None, max_length=200, description=MODEL_HELP)


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["Great film!", "Dull and too long."]}]},
    )
    texts: list[str] = Field(description="Texts to classify (at most serving.max_batch_texts).")
    model: str | None = Field(default=None, max_length=200, description=MODEL_HELP)


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "label": 1,
                    "label_name": "positive",
                    "probability": 0.9983,
                    "latency_ms": 4.2,
                    "base_model": "minilm-l6",
                    "language": "English",
                    "model_version": "demo@1",
                }
            ]
        }
    )
    label: int
    label_name: str
    probability: float
    latency_ms: float = Field(description="Server-side time of the model work, in ms.")
    base_model: str
    language: str
    model_version: str
    truncated: bool = Field(default=False, description="The text was cut to the limit.")


class BatchResponse(BaseModel):
    predictions: list[PredictResponse]
    latency_ms: float
    count: int


def service_of(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.predictions
    return service


def health_router() -> APIRouter:
    router = APIRouter(tags=["prediction"])

    @router.get("/health", summary="Service and model status")
    def health(request: Request) -> dict[str, Any]:
        return service_of(request).health()

    return router


def predict_router() -> APIRouter:
    router = APIRouter(tags=["prediction"])

    @router.post("/predict", response_model=PredictResponse, summary="Classify one text")
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        return await service_of(request).predict(body.text, body.model)

    @router.post("/predict/batch", response_model=BatchResponse, summary="Classify many texts")
    async def predict_batch(body: BatchRequest, request: Request) -> dict[str, Any]:
        return await service_of(request).predict_batch(body.texts, body.model)

    return router
