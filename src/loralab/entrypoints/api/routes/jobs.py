"""Training jobs: submit, watch, cancel, list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from loralab.entrypoints.api.deps import Context, CurrentUser, OwnedTask, limited, services
from loralab.entrypoints.api.schemas import MAX_OFFSET, JobList, JobPublic, errors
from loralab.jobs.requests import TrainRequest

router = APIRouter(tags=["jobs"])


@router.post(
    "/train",
    status_code=202,
    summary="Queue a training job",
    responses=errors(401, 422, 429),
    dependencies=[Depends(limited("train"))],
)
def train(body: TrainRequest, request: Request, actor: CurrentUser, ctx: Context) -> JobPublic:
    """Fields are the training settings users may choose; anything else is refused (422).
    ``train_file`` names a registered dataset (``NAME@VERSION``), never a server path."""
    found = services(request)
    job = found.jobs.submit(actor, body, ctx)
    found.metrics.jobs.labels(job.queue).inc()
    return JobPublic.of(job)


@router.get(
    "/task/{task_id}",
    summary="A job's state, progress and result (owner or admin)",
    responses=errors(401, 404),
)
def get_task(task: OwnedTask) -> JobPublic:
    return JobPublic.of(task)


@router.post(
    "/task/{task_id}/cancel",
    summary="Cancel a job (owner or admin)",
    responses=errors(401, 404, 409),
)
def cancel_task(task: OwnedTask, request: Request, actor: CurrentUser, ctx: Context) -> JobPublic:
    return JobPublic.of(services(request).jobs.cancel(actor, task.task_id, ctx))


@router.get(
    "/tasks",
    summary="Your jobs, newest first (admins: any user's)",
    responses=errors(401, 403, 422),
)
def list_tasks(
    request: Request,
    actor: CurrentUser,
    user: str | None = Query(default=None, description="Admins: this user's jobs."),
    everyone: bool = Query(default=False, description="Admins: every user's jobs."),
    state: str | None = Query(default=None, description="Only jobs in this state."),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> JobList:
    found = services(request).jobs.list(
        actor, user=user, state=state, limit=limit, offset=offset, everyone=everyone
    )
    return JobList.model_validate(found, from_attributes=True)
