"""Hyperparameter sweeps: trials queued as training jobs, results gathered into one study."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from loralab.entrypoints.api.deps import Context, CurrentUser, limited, services
from loralab.entrypoints.api.schemas import errors
from loralab.entrypoints.api.sweep_schemas import SweepList, SweepPublic, SweepRequest

router = APIRouter(tags=["sweeps"])


@router.post(
    "/sweeps",
    status_code=202,
    summary="Start a sweep: each trial one training job, a few at a time",
    responses=errors(401, 404, 409, 422, 429),
    dependencies=[Depends(limited("train"))],
)
def submit_sweep(
    body: SweepRequest, request: Request, actor: CurrentUser, ctx: Context
) -> SweepPublic:
    """``train`` holds the fixed settings (as ``POST /train``); ``space`` the settings to
    search. Every trial is a job of yours: the same checks, quota and audit as ``POST /train``.
    The first ``parallel`` trials are queued now, all or none (429 when they do not fit in your
    free job slots); each later one when a trial ends, drawn from the results so far. The
    ``pruner`` stops trials behind the others at an evaluation."""
    return SweepPublic.of(services(request).sweeps.submit(actor, body, ctx))


@router.get(
    "/sweeps",
    summary="Your sweeps, newest first (admins: everyone's)",
    responses=errors(401),
)
def list_sweeps(request: Request, actor: CurrentUser) -> SweepList:
    found = services(request).sweeps.list_sweeps(actor)
    return SweepList.model_validate(found, from_attributes=True)


@router.get(
    "/sweeps/{sweep_id}",
    summary="A sweep's trials and best result so far (owner or admin)",
    responses=errors(401, 404),
)
def get_sweep(
    request: Request,
    actor: CurrentUser,
    sweep_id: str = Path(max_length=64, description="The sweep's id (POST /sweeps)."),
) -> SweepPublic:
    """Trials whose jobs finished are told to the study first."""
    return SweepPublic.of(services(request).sweeps.get(actor, sweep_id))


@router.post(
    "/sweeps/{sweep_id}/cancel",
    summary="Cancel a sweep: its running trials' jobs, and no new trial (owner or admin)",
    responses=errors(401, 404, 409),
)
def cancel_sweep(
    request: Request,
    actor: CurrentUser,
    ctx: Context,
    sweep_id: str = Path(max_length=64, description="The sweep's id (POST /sweeps)."),
) -> SweepPublic:
    """Finished trials keep their results; a sweep cancelled before: 409."""
    return SweepPublic.of(services(request).sweeps.cancel(actor, sweep_id, ctx))
