"""What the job service hands out about a job: typed views, never ORM rows.

The API and the UI show these (the API owns the public shape built from them); the CLI, the
worker tests and the benchmarks read them too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepView:
    """One step of the pipeline stepper (see :func:`loralab.jobs.states.stepper`)."""

    name: str
    status: str


@dataclass(frozen=True)
class ProgressView:
    """Training progress as the worker last wrote it; all None before training starts."""

    epoch: float | None = None
    step: int | None = None
    total_steps: int | None = None
    percent: float | None = None
    loss: float | None = None


@dataclass(frozen=True)
class JobView:
    """A job as its owner (or an admin) sees it. Times are ISO 8601 in UTC."""

    task_id: str
    owner: str | None
    state: str
    steps: list[StepView]
    progress: ProgressView
    error: str | None
    cancel_requested: bool
    experiment: str | None
    base_model: str
    model_name: str | None
    run_id: str | None
    mlflow_run_id: str | None
    model_version: str | None
    queue: str
    attempts: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    queue_position: int | None
    # queued jobs: sent (the broker has it) or deferred (the recovery sweep sends it later)
    dispatch: str | None = None
    warnings: tuple[str, ...] = ()  # said at submission, e.g. a language the model cannot read
