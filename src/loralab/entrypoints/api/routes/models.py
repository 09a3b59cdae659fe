"""Registered models: search, recommend, stage transitions."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from loralab.entrypoints.api.deps import Admin, Context, CurrentUser, services
from loralab.registry.actions import transition_audited
from loralab.registry.cards import ModelCard
from loralab.registry.search import SearchQuery

router = APIRouter(tags=["models"])


def card_view(card: ModelCard) -> dict[str, Any]:
    return card.model_dump(mode="json", exclude={"embedding"}) | {"ref": card.ref}


class RecommendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "English product review sentiment"}]},
    )
    text: str | None = Field(default=None, max_length=1000, description="What you need.")
    model: str | None = Field(default=None, max_length=200, description="Models like NAME@V.")
    dataset: str | None = Field(default=None, max_length=200, description="A registered dataset.")
    limit: int = Field(default=5, ge=1, le=100)

    @model_validator(mode="after")
    def _one_question(self) -> RecommendRequest:
        if sum(x is not None for x in (self.text, self.model, self.dataset)) != 1:
            raise ValueError("give exactly one of text, model, dataset")
        return self


class TransitionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "demo@2", "stage": "Production"}]},
    )
    model: str = Field(max_length=200, description="NAME@VERSION")
    stage: Literal["Staging", "Production", "Archived"]
    reason: str = Field(default="", max_length=1000)
    force: bool = Field(default=False, description="Override the promotion gate (needs reason).")


@router.get("/models/search", summary="Search model cards")
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
    offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
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
    page = services(request).registry.search(query)
    return {
        "items": [card_view(c) for c in page.items],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
    }


@router.post("/models/recommend", summary="Models for a need, like a model, or for a dataset")
def recommend(body: RecommendRequest, request: Request, actor: CurrentUser) -> dict[str, Any]:
    registry = services(request).registry
    if body.dataset is not None:
        found = registry.recommend_for_registered_dataset(body.dataset, body.limit)
        results, start = found.results, found.starting_point
    else:
        results = (
            registry.recommend_text(body.text, body.limit)
            if body.text is not None
            else registry.recommend_similar(str(body.model), body.limit)
        )
        start = None
    return {
        "results": [
            {"model": card_view(r.card), "score": r.score, "reasons": r.reasons} for r in results
        ],
        "starting_point": start,
    }


@router.post("/models/transition", summary="Move a version to a stage (admin)")
def transition(
    body: TransitionRequest, request: Request, actor: Admin, ctx: Context
) -> dict[str, Any]:
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
    return {
        "model": card_view(result.card),
        "from": result.from_stage,
        "to": result.to_stage,
        "archived": result.archived,
    }
