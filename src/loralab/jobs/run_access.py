"""MLflow runs as job owners see them: a run belongs to the user whose job produced it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select

from loralab.errors import NotFound
from loralab.experiments import service as experiments
from loralab.experiments.service import MlflowRun
from loralab.identity import Actor
from loralab.infra.db import Database, Job
from loralab.settings import Settings


@dataclass(frozen=True)
class JobRun(MlflowRun):
    """An MLflow run with the job that produced it (None: a run no job of this platform made)."""

    task_id: str | None = None


def run_details(db: Database, settings: Settings, actor: Actor, run_id: str) -> JobRun:
    """An MLflow run's params, metrics and artifacts, for its job's owner or an admin.

    Anyone else gets the same NotFound as for a run that does not exist.
    """
    if not actor.is_admin:
        with db.session() as session:
            owner = session.scalar(select(Job.owner_id).where(Job.mlflow_run_id == run_id))
        if owner is None or owner != actor.id:
            raise NotFound(f"no MLflow run {run_id[:64]!r}")
    details = experiments.mlflow_run(settings, run_id)
    with db.session() as session:
        job = session.scalar(select(Job.id).where(Job.mlflow_run_id == run_id))
    return JobRun(**asdict(details), task_id=job)
