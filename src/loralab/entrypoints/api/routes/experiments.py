"""Experiments and MLflow runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request

from loralab.entrypoints.api.deps import Admin, CurrentUser, services
from loralab.experiments import service as experiments
from loralab.jobs.runs import run_details

router = APIRouter(tags=["experiments"])


@router.get("/experiments", summary="Every run of every experiment with key metrics (admin)")
def list_experiments(
    request: Request,
    actor: Admin,
    experiment: str | None = Query(default=None, description="Only this experiment."),
) -> list[dict[str, Any]]:
    settings = services(request).settings
    summaries = experiments.list_run_summaries(settings, experiment)
    return [{**asdict(s), "path": None} for s in summaries]


@router.get("/experiments/mlflow/{run_id}", summary="Params, metrics, artifacts of a run")
def mlflow_run(run_id: str, request: Request, actor: CurrentUser) -> dict[str, Any]:
    """The run of one of your jobs (admins: any run)."""
    found = services(request)
    return run_details(found.db, found.settings, actor, run_id)


@router.get("/mlflow", summary="Where the MLflow tracking server and UI are (public)")
def mlflow_info(request: Request) -> dict[str, Any]:
    return experiments.mlflow_info(services(request).settings)
