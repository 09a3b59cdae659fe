"""Experiments and MLflow runs."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from loralab.entrypoints.api.deps import Admin, CurrentUser, services
from loralab.entrypoints.api.schemas import MlflowInfo, MlflowRunPublic, RunList, RunSummary, errors
from loralab.experiments import service as experiments
from loralab.jobs.run_access import run_details

router = APIRouter(tags=["experiments"])


@router.get(
    "/experiments",
    summary="Every run of every experiment with key metrics (admin)",
    responses=errors(401, 403),
)
def list_experiments(
    request: Request,
    actor: Admin,
    experiment: str | None = Query(default=None, description="Only this experiment."),
) -> RunList:
    summaries = experiments.list_run_summaries(services(request).settings, experiment)
    return RunList([RunSummary.of(s) for s in summaries])


@router.get(
    "/experiments/mlflow/{run_id}",
    summary="Params, metrics, artifacts of a run",
    responses=errors(401, 404),
)
def mlflow_run(run_id: str, request: Request, actor: CurrentUser) -> MlflowRunPublic:
    """The run of one of your jobs (admins: any run)."""
    found = services(request)
    return MlflowRunPublic.of(run_details(found.db, found.settings, actor, run_id))


@router.get("/mlflow", summary="Where the MLflow tracking server and UI are (public)")
def mlflow_info(request: Request) -> MlflowInfo:
    return MlflowInfo.of(experiments.mlflow_info(services(request).settings))
