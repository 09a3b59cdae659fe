"""Sweeps through the platform: trials queued as training jobs, results told to the study.

``POST /sweeps`` (:meth:`SweepService.submit`) checks the space, creates an Optuna study in the
project's database, asks it for every trial's settings (TPE starts with random draws, so a
batch asked at once is a random search over the space) and queues each trial as a job through
:meth:`loralab.jobs.service.JobService.submit`: the same checks, per-user quota, ownership and
audit records as ``POST /train``. The trial keeps its job id.

A trial reports back through its job: the worker trains the job as any other (the job row and
the run folder are the truth), and :meth:`SweepService.get` tells the study the outcome of
every trial whose job has finished: the run's final ``metric`` for a succeeded job, a failed
trial otherwise. Telling is idempotent (a trial already told is left alone), so any number of
readers may look at once. Queued trials are not pruned: a trial's job runs to its end.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loralab.errors import InvalidInput, LoralabError, NotFound, TooManyRequests
from loralab.identity import Actor, RequestContext
from loralab.jobs import states
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import Settings
from loralab.sweeps.space import MAX_PARAMS, Param, ask, check_space
from loralab.sweeps.spec import NOT_SEARCHED
from loralab.sweeps.storage import study_storage
from loralab.training.runs import RunNotFound, find_run, read_metrics

if TYPE_CHECKING:
    import optuna

    from loralab.audit.log import AuditLog
    from loralab.infra.db import Database
    from loralab.jobs.views import JobView

log = logging.getLogger("loralab.sweeps")
KIND_JOBS = "jobs"
MAX_TRIALS = 100
SWEEP_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# TrainRequest fields a sweep may search: training settings, not where data is or what it is named
SEARCHABLE = (
    set(TrainRequest.model_fields)
    - NOT_SEARCHED
    - {
        "model_name",
        "allow_language_mismatch",
        "metric_for_best",
    }
)


class SweepRequest(BaseModel):
    """A sweep as a user submits it (the body of ``POST /sweeps``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="A label."
    )
    train: TrainRequest = Field(description="The fixed settings, as for POST /train.")
    space: dict[str, Param] = Field(
        min_length=1,
        max_length=MAX_PARAMS,
        description="Settings to search: int, float, categorical.",
    )
    metric: Literal["accuracy", "macro_f1"] = Field(
        default="accuracy", description="Maximised; it also picks each trial's best checkpoint."
    )
    trials: int = Field(
        ge=1, le=MAX_TRIALS, description="Trials to queue now (each one job; counts in your quota)."
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the sampler.")

    @model_validator(mode="after")
    def _space_fits(self) -> SweepRequest:
        """Each searched setting is one a job may set, valid at its bounds and choices."""
        try:
            check_space(self.space, SEARCHABLE, self.trial_request)
        except InvalidInput as err:
            raise ValueError(str(err)) from None
        return self

    def trial_request(self, params: dict[str, Any]) -> TrainRequest:
        """The job request of a trial: the fixed settings with the trial's values."""
        data = {
            **self.train.model_dump(exclude_none=True),
            "metric_for_best": self.metric,
            **params,
        }
        try:
            return TrainRequest(**data)
        except ValidationError as err:
            issues = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in err.errors()
            )
            raise InvalidInput(issues) from None


@dataclass(frozen=True)
class TrialView:
    number: int
    state: str  # RUNNING (its job queued or training), COMPLETE, FAIL
    value: float | None
    params: dict[str, Any]
    job_id: str | None
    job_state: str | None
    run_id: str | None
    error: str | None


@dataclass(frozen=True)
class SweepView:
    sweep_id: str
    name: str | None
    owner: str | None
    metric: str
    state: str  # running | finished
    created_at: str | None
    trials: list[TrialView]
    best: TrialView | None


class SweepService:
    """Submit and read sweeps whose trials run as jobs."""

    def __init__(self, db: Database, settings: Settings, jobs: JobService, audit: AuditLog) -> None:
        self.db, self.settings, self.jobs, self.audit = db, settings, jobs, audit

    def submit(self, actor: Actor, request: SweepRequest, ctx: RequestContext) -> SweepView:
        """Queue ``request.trials`` jobs, all or none: a refusal part-way (quota, data,
        model) cancels the jobs already queued and removes the study."""
        import optuna

        self._check_quota(actor, request.trials)
        sweep_id = str(uuid.uuid4())
        storage = study_storage(self.settings.db_url)
        study = optuna.create_study(
            study_name=sweep_id,
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=request.seed),
        )
        attrs = {
            "kind": KIND_JOBS,
            "owner_id": actor.id,
            "owner": actor.username,
            "name": request.name,
            "metric": request.metric,
            "request": request.model_dump(mode="json"),
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        queued: list[str] = []
        try:
            for _ in range(request.trials):
                trial, params = ask(study, request.space)
                trial.set_user_attr("settings", params)
                job = self.jobs.submit(actor, request.trial_request(params), ctx)
                trial.set_user_attr("job_id", job.task_id)
                queued.append(job.task_id)
        except LoralabError:
            self._undo(actor, ctx, study, queued)
            raise
        with self.db.session() as session:
            self.audit.record_by(
                session, actor, ctx, action="sweep.submit", outcome="allowed",
                target=f"sweep:{sweep_id}", detail={"trials": request.trials, "jobs": queued},
            )  # fmt: skip
        return self._view(actor, study)

    def get(self, actor: Actor, sweep_id: str) -> SweepView:
        """A sweep, for its owner or an admin (anyone else: NotFound, as for a typo), with
        every finished job's result told to the study first."""
        study = self._visible(actor, sweep_id)
        self._tell_finished(actor, study)
        return self._view(actor, study)

    def list_sweeps(self, actor: Actor) -> list[SweepView]:
        """The actor's sweeps (an admin: everyone's), newest first, as last told."""
        import optuna

        storage = study_storage(self.settings.db_url)
        found = []
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            attrs = summary.user_attrs
            if attrs.get("kind") == KIND_JOBS and (
                actor.is_admin or attrs.get("owner_id") == actor.id
            ):
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                found.append(self._view(actor, study))
        return sorted(found, key=lambda v: v.created_at or "", reverse=True)

    # -- helpers -------------------------------------------------------------------------------
    def _check_quota(self, actor: Actor, trials: int) -> None:
        """All the trials must fit in the actor's free job slots now."""
        limit = self.settings.queue.max_active_per_user
        active = sum(1 for job in self.jobs.list(actor, limit=500) if job.state in states.ACTIVE)
        if active + trials > limit:
            raise TooManyRequests(
                f"trials: a sweep of {trials} trials needs {trials} free job slots and you have "
                f"{max(0, limit - active)} (at most {limit} active jobs): queue fewer trials or "
                "wait for jobs to finish",
                retry_after=30,
            )

    def _undo(
        self, actor: Actor, ctx: RequestContext, study: optuna.Study, queued: list[str]
    ) -> None:
        import optuna

        for job_id in queued:
            try:
                self.jobs.cancel(actor, job_id, ctx)
            except LoralabError as err:  # already finished: nothing to take back
                log.warning("sweep %s: cannot cancel job %s: %s", study.study_name, job_id, err)
        optuna.delete_study(
            study_name=study.study_name, storage=study_storage(self.settings.db_url)
        )

    def _visible(self, actor: Actor, sweep_id: str) -> optuna.Study:
        import optuna

        missing = NotFound(f"no sweep {sweep_id!r}")
        if not SWEEP_ID.match(sweep_id):
            raise missing
        try:
            study = optuna.load_study(
                study_name=sweep_id, storage=study_storage(self.settings.db_url)
            )
        except KeyError:
            raise missing from None
        attrs = study.user_attrs
        if attrs.get("kind") != KIND_JOBS or (
            attrs.get("owner_id") != actor.id and not actor.is_admin
        ):
            raise missing
        return study

    def _tell_finished(self, actor: Actor, study: optuna.Study) -> None:
        """Tell the study the result of each trial whose job has finished."""
        from optuna.trial import TrialState

        metric = study.user_attrs["metric"]
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            job = self._job(actor, trial.user_attrs.get("job_id"))
            if job is None or job.state not in states.TERMINAL:
                continue
            value = self._final_metric(job, metric) if job.state == states.SUCCEEDED else None
            try:
                if value is None:
                    study.tell(trial.number, state=TrialState.FAIL)
                else:
                    study.tell(trial.number, value)
            except (RuntimeError, ValueError) as err:  # another reader told it first
                log.info("sweep %s trial %d: %s", study.study_name, trial.number, err)

    def _job(self, actor: Actor, job_id: str | None) -> JobView | None:
        if not job_id:
            return None
        try:
            return self.jobs.get(actor, job_id)
        except NotFound:
            return None

    def _final_metric(self, job: JobView, metric: str) -> float | None:
        """The run's final value of ``metric`` (on its best checkpoint), from metrics.json."""
        if not job.run_id:
            return None
        try:
            final = read_metrics(find_run(self.settings.storage.results_dir, job.run_id)).get(
                "final"
            )
        except RunNotFound:
            return None
        value = final.get(metric) if isinstance(final, dict) else None
        return float(value) if isinstance(value, int | float) else None

    def _view(self, actor: Actor, study: optuna.Study) -> SweepView:
        from optuna.trial import TrialState

        attrs = study.user_attrs
        trials = []
        for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            job_id = trial.user_attrs.get("job_id")
            job = self._job(actor, job_id)
            trials.append(
                TrialView(
                    number=trial.number,
                    state=trial.state.name,
                    value=trial.value if trial.state == TrialState.COMPLETE else None,
                    params=dict(trial.user_attrs.get("settings") or trial.params),
                    job_id=job_id,
                    job_state=job.state if job else None,
                    run_id=job.run_id if job else None,
                    error=job.error if job else None,
                )
            )
        done = [t for t in trials if t.state == TrialState.COMPLETE.name and t.value is not None]
        best = max(done, key=lambda t: (t.value or 0.0, -t.number)) if done else None
        running = any(t.state in {"RUNNING", "WAITING"} for t in trials)
        return SweepView(
            sweep_id=study.study_name,
            name=attrs.get("name"),
            owner=attrs.get("owner"),
            metric=str(attrs.get("metric")),
            state="running" if running else "finished",
            created_at=attrs.get("created_at"),
            trials=trials,
            best=best,
        )
