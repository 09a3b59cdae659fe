"""Registered models: search, recommend, stage transitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Query, Request

from loralab.datasets.access import DatasetAccess
from loralab.entrypoints.api.deps import Admin, Context, CurrentUser, services
from loralab.entrypoints.api.schemas import (
    MAX_OFFSET,
    CardPublic,
    Recommendation,
    RecommendRequest,
    RecommendResponse,
    SearchPage,
    TransitionRequest,
    TransitionResponse,
    errors,
)
from loralab.registry import service as registry_service
from loralab.registry.actions import transition_audited
from loralab.registry.search import SearchQuery

router = APIRouter(tags=["models"])


def recommend_response(
    results: Sequence[registry_service.Recommendation], starting_point: dict[str, Any] | None
) -> RecommendResponse:
    """The answer of ``POST /models/recommend``: cards with their score and reasons."""
    found = [
        Recommendation(model=CardPublic.of(r.card), score=r.score, reasons=r.reasons)
        for r in results
    ]
    return RecommendResponse(results=found, starting_point=starting_point)


@router.get("/models/search", summary="Search model cards", responses=errors(401, 422))
def search(
    request: Request,
    actor: CurrentUser,
    name: str | None = None,
    base_model: str | None = None,
    language: str | None = None,
    task: str | None = None,
    stage: str | None = None,
    sort: str = "created_at",
    descending: bool = True,
    limit: int = Query(default=20, ge=1, le=100),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> SearchPage:
    query = SearchQuery(
        name=name,
        base_model=base_model,
        language=language,
        task=task,
        stage=stage,
        sort=sort,
        descending=descending,
        limit=limit,
        offset=offset,
    )
    found = services(request)
    viewer = DatasetAccess(found.settings, found.db, actor)
    return SearchPage.of(found.registry.search(query, viewer))


@router.post(
    "/models/recommend",
    summary="Models for a need, like a model, or for a dataset",
    responses=errors(401, 404, 422),
)
def recommend(body: RecommendRequest, request: Request, actor: CurrentUser) -> RecommendResponse:
    found = services(request)
    viewer = DatasetAccess(found.settings, found.db, actor)
    answer = found.registry.recommend(
        text=body.text, like=body.model, dataset=body.dataset, limit=body.limit, viewer=viewer
    )
    return recommend_response(answer.results, answer.starting_point)


@router.post(
    "/models/transition",
    summary="Move a version to a stage (admin)",
    responses=errors(401, 403, 404, 409, 422),
)
def transition(
    body: TransitionRequest, request: Request, actor: Admin, ctx: Context
) -> TransitionResponse:
    found = services(request)
    result = transition_audited(
        found.registry,
        found.db,
        found.audit,
        actor,
        ctx,
        ref=body.model,
        stage=body.stage,
        reason=body.reason,
        force=body.force,
    )
    answer = {"from": result.from_stage, "to": result.to_stage, "archived": result.archived}
    return TransitionResponse.model_validate({"model": CardPublic.of(result.card), **answer})
