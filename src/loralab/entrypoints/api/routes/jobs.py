"""Training jobs: submit, watch, cancel, list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from loralab.entrypoints.api.deps import Context, CurrentUser, OwnedTask, services
from loralab.jobs.requests import TrainRequest

router = APIRouter(tags=["jobs"])


@router.post("/train", status_code=202, summary="Queue a training job")
def train(body: TrainRequest, request: Request, actor: CurrentUser, ctx: Context) -> dict[str, Any]:
    """Fields are the training settings users may choose; anything else is refused (422).
    ``train_file`` names a registered dataset (``NAME@VERSION``), never a server path."""
    found = services(request)
    job = found.jobs.submit(actor, body, ctx)
    found.metrics.jobs.labels(job.get("queue", "cpu")).inc()
    return job


@router.get("/task/{task_id}", summary="A job's state, progress and result (owner or admin)")
def get_task(task: OwnedTask) -> dict[str, Any]:
    return task


@router.post("/task/{task_id}/cancel", summary="Cancel a job (owner or admin)")
def cancel_task(
    task: OwnedTask, request: Request, actor: CurrentUser, ctx: Context
) -> dict[str, Any]:
    return services(request).jobs.cancel(actor, str(task["task_id"]), ctx)


@router.get("/tasks", summary="Your jobs, newest first (admins: any user's)")
def list_tasks(
    request: Request,
    actor: CurrentUser,
    user: str | None = Query(default=None, description="Admins: this user's jobs."),
    state: str | None = Query(default=None, description="Only jobs in this state."),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    return services(request).jobs.list(actor, user=user, state=state, limit=limit, offset=offset)
