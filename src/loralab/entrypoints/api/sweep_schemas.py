"""Request and response bodies of the sweep routes (``POST /sweeps``, ``GET /sweeps/...``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, RootModel

from loralab.entrypoints.api.schemas import ISO_TIME, Public
from loralab.sweeps.service import SweepRequest

__all__ = ["SweepList", "SweepPublic", "SweepRequest", "SweepTrialPublic"]


class SweepTrialPublic(Public):
    """One trial: the settings it tries, its job and, once the job finished, its result."""

    number: int
    state: Literal["RUNNING", "WAITING", "COMPLETE", "PRUNED", "FAIL"] = Field(
        description="RUNNING: its job is queued or training; COMPLETE: the job succeeded and "
        "its metric is told to the study; PRUNED: the sweep's pruner stopped it at an "
        "evaluation (its job ends cancelled); FAIL: the job failed, was cancelled or was not "
        "queued."
    )
    value: float | None = Field(description="The sweep's metric on the run's best checkpoint.")
    params: dict[str, Any] = Field(description="The settings this trial tries.")
    job_id: str | None = Field(description="The trial's training job (GET /task/{task_id}).")
    job_state: str | None
    run_id: str | None
    error: str | None = Field(description="Why the trial's job failed or was cancelled.")


class SweepPublic(Public):
    """A sweep as its owner (or an admin) sees it."""

    sweep_id: str
    name: str | None
    owner: str | None
    metric: str = Field(description="Maximised: accuracy or macro_f1.")
    state: Literal["running", "finished", "cancelled"] = Field(
        description="running: trials run or are still to be queued; finished: every trial "
        "ended; cancelled: POST /sweeps/{sweep_id}/cancel (no trial is queued after)."
    )
    created_at: str | None = Field(description=ISO_TIME)
    planned: int = Field(description="Trials in all (the request's trials).")
    parallel: int = Field(description="Trials queued at once.")
    trials: list[SweepTrialPublic] = Field(description="The trials queued so far.")
    best: SweepTrialPublic | None = Field(description="The best completed trial so far.")
    note: str | None = Field(description="Why the sweep stopped queueing trials, if it did.")


class SweepList(RootModel[list[SweepPublic]]):
    """A list of SweepPublic."""
