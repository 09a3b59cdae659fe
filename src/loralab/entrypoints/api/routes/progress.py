"""A job's live progress for the UI: metric history and the tail of its log (owner or admin)."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from loralab.entrypoints.api.deps import OwnedTask, services
from loralab.jobs import progress

router = APIRouter(tags=["jobs"])


class MetricPoint(BaseModel):
    step: int = Field(description="Training step the value was logged at.")
    value: float


class MetricsResponse(BaseModel):
    task_id: str
    state: str
    series: dict[str, list[MetricPoint]] = Field(
        description="train_loss, train_loss_avg, learning_rate, grad_norm (per logged step) and "
        "val_loss, val_accuracy, val_macro_f1 (per evaluation); a series not yet logged is absent."
    )


class LogsResponse(BaseModel):
    task_id: str
    state: str
    lines: list[str] = Field(description="The last lines of the run's log, oldest first.")
    truncated: bool = Field(description="True when the log has more lines than these.")


class ClassScores(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class ReportResponse(BaseModel):
    task_id: str
    labels: list[str] = Field(description="Label names in id order; empty before the run ends.")
    per_class: dict[str, ClassScores]
    confusion_matrix_png: str | None = Field(description="base64 of the PNG, or None.")


@router.get(
    "/task/{task_id}/metrics",
    response_model=MetricsResponse,
    summary="A job's metric history, live while it runs (owner or admin)",
)
def task_metrics(task: OwnedTask, request: Request) -> MetricsResponse:
    found = progress.job_metrics(services(request).settings, progress.run_ref(task))
    series = {
        name: [MetricPoint(step=p.step, value=p.value) for p in points]
        for name, points in found.series.items()
    }
    return MetricsResponse(task_id=found.task_id, state=found.state, series=series)


@router.get(
    "/task/{task_id}/logs",
    response_model=LogsResponse,
    summary="The last lines of a job's log, without server paths or secrets (owner or admin)",
)
def task_logs(
    task: OwnedTask,
    request: Request,
    tail: int = Query(default=100, ge=1, le=progress.MAX_TAIL, description="How many lines."),
) -> LogsResponse:
    found = progress.job_log(services(request).settings, progress.run_ref(task), tail)
    return LogsResponse(
        task_id=found.task_id, state=found.state, lines=found.lines, truncated=found.truncated
    )


@router.get(
    "/task/{task_id}/report",
    response_model=ReportResponse,
    summary="A finished job's per-class report and confusion matrix (owner or admin)",
)
def task_report(task: OwnedTask, request: Request) -> ReportResponse:
    found = progress.job_report(services(request).settings, progress.run_ref(task))
    image = base64.b64encode(found.confusion_png).decode("ascii") if found.confusion_png else None
    per_class = {k: ClassScores.model_validate(v) for k, v in found.per_class.items()}
    return ReportResponse(
        task_id=found.task_id, labels=found.labels, per_class=per_class, confusion_matrix_png=image
    )
