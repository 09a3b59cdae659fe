"""What the web UI's pages need beyond the core routes: the base-model catalog, a step
estimate, dataset diff and plots, a model's stage history and the audit chain's status.

Thin: each route checks who may see what (the same rules as the core routes) and hands the
work to a service.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Query, Request

from loralab.datasets import service as datasets
from loralab.datasets import uploads
from loralab.datasets.access import DatasetAccess
from loralab.entrypoints.api.deps import Admin, CurrentUser, services
from loralab.entrypoints.api.schemas import (
    AuditVerifyResponse,
    CatalogModel,
    CatalogResponse,
    DatasetDiffPublic,
    DatasetPlots,
    StageChangePublic,
    StageHistory,
    StepEstimate,
    StepEstimateRequest,
    errors,
)
from loralab.jobs import progress
from loralab.training.config import TrainConfig

router = APIRouter(tags=["web UI"])
MAX_CHANGES = 200


@router.get("/catalog", summary="Base models a job may name", responses=errors(401))
def catalog(request: Request, actor: CurrentUser) -> CatalogResponse:
    choices = progress.base_model_choices(services(request).settings)
    default = str(TrainConfig.model_fields["base_model"].default)
    return CatalogResponse(items=[CatalogModel.of(c) for c in choices], default=default)


@router.post(
    "/train/estimate",
    summary="How many optimiser steps a job would run",
    responses=errors(401, 404, 422),
)
def estimate(body: StepEstimateRequest, request: Request, actor: CurrentUser) -> StepEstimate:
    found = services(request)
    version = uploads.resolve_visible(found.settings, found.db, actor, body.train_file)
    plan = progress.step_plan(
        version.rows, body.validation_split, body.batch_size, body.epochs, body.max_steps
    )
    return StepEstimate.of(plan)


@router.get(
    "/datasets/{ref}/diff",
    summary="Rows added, removed and relabelled from another visible version to this one",
    responses=errors(401, 404, 422),
)
def dataset_diff(
    ref: str,
    request: Request,
    actor: CurrentUser,
    base: str = Query(max_length=200, description="The version compared from: NAME@VERSION."),
) -> DatasetDiffPublic:
    found = services(request)
    new = uploads.resolve_visible(found.settings, found.db, actor, ref)
    old = uploads.resolve_visible(found.settings, found.db, actor, base)
    diff = datasets.diff_versions(found.settings, old.ref, new.ref)
    diff.changes = diff.changes[:MAX_CHANGES]
    return DatasetDiffPublic.of(diff)


@router.get(
    "/datasets/{ref}/plots",
    summary="The analysis plots of a visible version (PNG, base64)",
    responses=errors(401, 404, 422),
)
def dataset_plots(ref: str, request: Request, actor: CurrentUser) -> DatasetPlots:
    found = services(request)
    version = uploads.resolve_visible(found.settings, found.db, actor, ref)
    folder = datasets.version_analysis(found.settings, version, datasets.DataSpec())
    plots = {
        png.stem: base64.b64encode(png.read_bytes()).decode("ascii")
        for png in sorted(folder.glob("*.png"))
    }
    return DatasetPlots(ref=version.ref, plots=plots)


@router.get(
    "/models/{ref}/history",
    summary="A visible model's stage history, oldest first",
    responses=errors(401, 404),
)
def stage_history(ref: str, request: Request, actor: CurrentUser) -> StageHistory:
    found = services(request)
    card = found.registry.get_card(ref, DatasetAccess(found.settings, found.db, actor))
    changes = [StageChangePublic.of(c) for c in found.registry.history(card.name)]
    return StageHistory(model=card.name, changes=changes)


@router.get(
    "/audit/verify",
    summary="Whether the audit log's hash chain verifies (admin)",
    responses=errors(401, 403),
)
def audit_verify(request: Request, actor: Admin) -> AuditVerifyResponse:
    return AuditVerifyResponse.of(services(request).audit.verify())
