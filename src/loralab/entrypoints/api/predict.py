"""Routes of the prediction service: ``GET /health`` (and ``/health/details`` for monitoring),
``POST /predict``, ``POST /predict/batch``.

``POST /predict/batch`` answers one JSON object by default; a client that sends
``Accept: application/x-ndjson`` gets the answers streamed as they are computed, one JSON object
per line (:class:`StreamedPrediction`, in request order), chunk by chunk.

The standalone service (``loralab serve``) mounts them as they are; the platform API mounts the
same router behind sign-in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from loralab.entrypoints.api.middleware import monitoring_client
from loralab.entrypoints.api.schemas import (
    BatchRequest,
    BatchResponse,
    ModelHealth,
    PredictRequest,
    PredictResponse,
    ServingStatus,
    StreamedPrediction,
    StreamError,
    errors,
)
from loralab.errors import PermissionDenied
from loralab.serving.service import PredictionService
from loralab.serving.stream import BatchStream, open_batch_stream

NDJSON = "application/x-ndjson"


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

    @router.post(
        "/predict/batch",
        summary="Classify many texts (streamed with Accept: application/x-ndjson)",
        response_model=BatchResponse,
        responses={
            200: {
                "content": {
                    NDJSON: {
                        "schema": {"$ref": "#/components/schemas/StreamedPrediction"},
                        "example": '{"index": 0, "label": 1, "label_name": "positive", ...}',
                    }
                },
                "description": "One JSON object; with Accept: application/x-ndjson, one "
                "StreamedPrediction per line in request order (a failure part-way ends the "
                "stream with a StreamError line).",
            }
        },
    )
    async def predict_batch(body: BatchRequest, request: Request) -> Response | BatchResponse:
        service = service_of(request)
        if wants_ndjson(request.headers.get("accept")):
            stream = await open_batch_stream(service, body.texts, body.model)
            return StreamingResponse(ndjson_lines(stream), media_type=NDJSON)
        answer = await service.predict_batch(body.texts, body.model)
        return BatchResponse.model_validate(answer)

    return router


def wants_ndjson(accept: str | None) -> bool:
    """The client asked for NDJSON (``Accept: application/x-ndjson``, parameters allowed)."""
    if not accept:
        return False
    return any(part.split(";")[0].strip().lower() == NDJSON for part in accept.split(","))


async def ndjson_lines(stream: BatchStream) -> AsyncIterator[bytes]:
    """Each chunk of answers as NDJSON bytes (one write per chunk, not per line)."""
    async for rows in stream.chunks():
        lines = [
            (StreamError if "error" in row else StreamedPrediction)
            .model_validate(row)
            .model_dump_json()
            for row in rows
        ]
        yield ("\n".join(lines) + "\n").encode()
