"""Sweeps through the platform: trials queued as training jobs, results told to the study.

``POST /sweeps`` (:meth:`SweepService.submit`) checks the space, creates an Optuna study in the
project's database and queues the first ``parallel`` trials (default: up to 3) as jobs through
:meth:`loralab.jobs.service.JobService.submit`: the same checks, per-user quota, ownership and
audit records as ``POST /train``. Each job row names its trial (``sweep_id``, ``sweep_trial``).

While a trial's job trains, the worker reports each evaluation to the trial
(:meth:`SweepService.watch`, a :class:`~loralab.sweeps.trials.TrialWatch`): the sweep's pruner
may stop a trial that is behind the others at the same step; its job ends cancelled, saying so.
When a job ends, :meth:`SweepService.job_ended` (the worker) or any read of the sweep tells the
study the outcome (the run's final ``metric``, PRUNED or FAIL) and queues the next trials, up
to ``parallel`` at once and ``trials`` in all: TPE draws the first trials at random and later
ones from the results so far, so a sweep that runs a few trials at a time searches adaptively
(all at once is a random search). Telling and topping up are idempotent and serialised per
sweep (PostgreSQL: an advisory lock; one process: a lock), so any number of workers and readers
may do it at once. ``POST /sweeps/{id}/cancel`` cancels the running trials and queues no more.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select

from loralab.errors import Conflict, InvalidInput, LoralabError, NotFound, TooManyRequests
from loralab.identity import SYSTEM, Actor, RequestContext
from loralab.infra.db import User
from loralab.infra.locks import serialise_name
from loralab.jobs import states
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import Settings
from loralab.sweeps.space import MAX_PARAMS, Param, ask, check_space
from loralab.sweeps.spec import NOT_SEARCHED, PrunerSpec
from loralab.sweeps.storage import study_storage
from loralab.sweeps.trials import TrialWatch
from loralab.training.runs import RunNotFound, find_run, read_metrics

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from loralab.audit.log import AuditLog
    from loralab.infra.db import Database
    from loralab.jobs.views import JobView

log = logging.getLogger("loralab.sweeps")
KIND_JOBS = "jobs"
MAX_TRIALS = 100
DEFAULT_PARALLEL = 3  # trials queued at once when the request does not say
SWEEP_LOCK_KEY = 7_301_201  # advisory lock per sweep (beside infra.locks' keys)
NOT_QUEUED = "not_queued"  # a trial asked for whose job was refused: not counted in the budget
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
_advancing = threading.Lock()  # one process tops up one sweep at a time (SQLite has no lock)


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
    trials: int = Field(ge=1, le=MAX_TRIALS, description="Trials in all (each one job).")
    parallel: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS,
        description=f"Trials queued at once (default: {DEFAULT_PARALLEL}, at most trials); "
        "each counts in your job quota while it runs. As each ends, the next is drawn from the "
        "results so far (TPE); parallel equal to trials is a random search.",
    )
    pruner: PrunerSpec = Field(
        default_factory=PrunerSpec,
        description="Stops a trial behind the others at an evaluation (median: the median of "
        "the trials before it at the same step; none: every trial runs to its end).",
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

    @property
    def at_once(self) -> int:
        return min(self.trials, self.parallel or DEFAULT_PARALLEL)

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

    def sampler(self, drawn: int) -> optuna.samplers.BaseSampler:
        """TPE: random draws for the first half of the budget (at most 10, Optuna's default),
        then drawn from the results; ``constant_liar`` keeps trials that run at once apart.
        Seeded by the trials drawn so far, so a process that draws later does not repeat the
        first draws."""
        import optuna

        return optuna.samplers.TPESampler(
            seed=(self.seed + drawn) % 2**32,
            n_startup_trials=max(1, min(10, self.trials // 2)),
            constant_liar=True,
        )


@dataclass(frozen=True)
class TrialView:
    number: int
    state: str  # RUNNING (its job queued or training), COMPLETE, PRUNED, FAIL
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
    state: str  # running | finished | cancelled
    created_at: str | None
    planned: int
    parallel: int
    trials: list[TrialView]
    best: TrialView | None
    note: str | None


class SweepService:
    """Submit, read, advance and cancel sweeps whose trials run as jobs."""

    def __init__(self, db: Database, settings: Settings, jobs: JobService, audit: AuditLog) -> None:
        self.db, self.settings, self.jobs, self.audit = db, settings, jobs, audit

    # -- users ---------------------------------------------------------------------------------
    def submit(self, actor: Actor, request: SweepRequest, ctx: RequestContext) -> SweepView:
        """Queue the first ``request.at_once`` trials, all or none: a refusal part-way (quota,
        data, model) cancels the jobs already queued and removes the study. Named datasets are
        pinned to their version now, so every trial trains on the same data."""
        import optuna

        self._check_quota(actor, request.at_once)
        request = request.model_copy(update={"train": self.jobs.pin_datasets(actor, request.train)})
        sweep_id = str(uuid.uuid4())
        storage = study_storage(self.settings.db_url)
        study = optuna.create_study(
            study_name=sweep_id,
            storage=storage,
            direction="maximize",
            sampler=request.sampler(0),
            pruner=request.pruner.build(),
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
            for _ in range(request.at_once):
                queued.append(self._queue_trial(actor, study, request, ctx))
        except LoralabError:
            self._undo(actor, ctx, study, queued)
            raise
        with self.db.session() as session:
            self.audit.record_by(
                session, actor, ctx, action="sweep.submit", outcome="allowed",
                target=f"sweep:{sweep_id}",
                detail={"trials": request.trials, "parallel": request.at_once, "jobs": queued},
            )  # fmt: skip
        return self._view(actor, study)

    def get(self, actor: Actor, sweep_id: str) -> SweepView:
        """A sweep, for its owner or an admin (anyone else: NotFound, as for a typo), once
        every finished job's result is told to the study and the next trials are queued."""
        study = self._visible(actor, sweep_id)
        self._advance(study)
        return self._view(actor, study)

    def cancel(self, actor: Actor, sweep_id: str, ctx: RequestContext) -> SweepView:
        """Queue no more trials and cancel the running ones' jobs (owner or admin)."""
        study = self._visible(actor, sweep_id)
        with self._lock(sweep_id):
            if study.user_attrs.get("cancelled"):
                raise Conflict(f"sweep {sweep_id} is already cancelled")
            study.set_user_attr("cancelled", actor.username)
        from optuna.trial import TrialState

        cancelled = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            job_id = trial.user_attrs.get("job_id")
            try:
                if job_id:
                    self.jobs.cancel(actor, job_id, ctx)
                    cancelled.append(job_id)
            except LoralabError as err:  # finished meanwhile: its result is told below
                log.info("sweep %s: job %s not cancelled: %s", sweep_id, job_id, err)
        with self.db.session() as session:
            self.audit.record_by(
                session, actor, ctx, action="sweep.cancel", outcome="allowed",
                target=f"sweep:{sweep_id}", detail={"jobs": cancelled},
            )  # fmt: skip
        self._advance(study)
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

    # -- the worker ----------------------------------------------------------------------------
    def watch(self, link: tuple[str, int]) -> TrialWatch | None:
        """The watcher of trial ``link`` = (sweep id, number) while its job trains (None if the
        sweep or trial is gone or already told: the job then trains as a plain job)."""
        import optuna
        from optuna.trial import TrialState

        sweep_id, number = link
        try:
            study, request = self._load(sweep_id)
            storage = study_storage(self.settings.db_url)
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(sweep_id), number
            )
            if storage.get_trial(trial_id).state != TrialState.RUNNING:
                return None
            return TrialWatch(optuna.trial.Trial(study, trial_id), request.metric, sweep_id)
        except (KeyError, LoralabError, ValidationError) as err:
            log.warning("sweep %s trial %d: not watched: %s", sweep_id, number, err)
            return None

    def job_ended(self, job_id: str) -> None:
        """After a delivery of a job: if it is a sweep's trial, tell its result and queue the
        next trials. Never raises (the job's own outcome is already recorded)."""
        try:
            link = self.jobs.sweep_of(job_id)
            if link is not None:
                self._advance(self._load(link[0])[0])
        except Exception as err:  # noqa: BLE001 - the next event or read advances the sweep
            log.warning("job %s: its sweep did not advance: %s", job_id, err)

    # -- helpers -------------------------------------------------------------------------------
    def _check_quota(self, actor: Actor, trials: int) -> None:
        """The first trials must fit in the actor's free job slots now."""
        limit = self.settings.queue.max_active_per_user
        free = self._free_slots(actor)
        if trials > free:
            raise TooManyRequests(
                f"trials: a sweep that runs {trials} trials at once needs {trials} free job slots "
                f"and you have {free} (at most {limit} active jobs): lower parallel or wait for "
                "jobs to finish",
                retry_after=30,
            )

    def _free_slots(self, actor: Actor) -> int:
        limit = self.settings.queue.max_active_per_user
        active = sum(1 for job in self.jobs.list(actor, limit=500) if job.state in states.ACTIVE)
        return max(0, limit - active)

    def _queue_trial(
        self, actor: Actor, study: optuna.Study, request: SweepRequest, ctx: RequestContext
    ) -> str:
        """Ask the study for a trial and queue its job; a refused job fails the trial (not
        counted in the budget) and raises."""
        from optuna.trial import TrialState

        trial, params = ask(study, request.space)
        trial.set_user_attr("settings", params)
        try:
            job = self.jobs.submit(
                actor,
                request.trial_request(params),
                ctx,
                trial=(study.study_name, trial.number),
            )
        except LoralabError as err:
            trial.set_user_attr(NOT_QUEUED, True)
            trial.set_user_attr("error", f"not queued: {err}"[:500])
            study.tell(trial.number, state=TrialState.FAIL)
            raise
        trial.set_user_attr("job_id", job.task_id)
        return job.task_id

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

    def _load(self, sweep_id: str) -> tuple[optuna.Study, SweepRequest]:
        """The study of an API sweep with its sampler and pruner (KeyError: no such sweep)."""
        import optuna

        storage = study_storage(self.settings.db_url)
        study = optuna.load_study(study_name=sweep_id, storage=storage)
        if study.user_attrs.get("kind") != KIND_JOBS:
            raise KeyError(sweep_id)
        request = SweepRequest.model_validate(study.user_attrs["request"])
        study.sampler = request.sampler(len(study.get_trials(deepcopy=False)))
        study.pruner = request.pruner.build()
        return study, request

    def _visible(self, actor: Actor, sweep_id: str) -> optuna.Study:
        missing = NotFound(f"no sweep {sweep_id!r}")
        if not SWEEP_ID.match(sweep_id):
            raise missing
        try:
            study, _ = self._load(sweep_id)
        except KeyError:
            raise missing from None
        if study.user_attrs.get("owner_id") != actor.id and not actor.is_admin:
            raise missing
        return study

    def _lock(self, sweep_id: str) -> AbstractContextManager[None]:
        return _sweep_lock(self.db, sweep_id)

    def _advance(self, study: optuna.Study) -> None:
        """Tell the finished trials, then queue trials up to ``parallel`` running and
        ``trials`` in all, as the sweep's owner (the audit log names the sweep)."""
        from optuna.trial import TrialState

        with self._lock(study.study_name):
            self._tell_finished(study)
            attrs = study.user_attrs
            if attrs.get("cancelled"):
                return
            request = SweepRequest.model_validate(attrs["request"])
            trials = study.get_trials(deepcopy=False)
            made = _queued(trials)
            running = sum(1 for t in trials if t.state == TrialState.RUNNING)
            wanted = min(request.at_once - running, request.trials - made)
            if wanted <= 0:
                return
            owner = self._owner(int(attrs["owner_id"]))
            if owner is None:
                study.set_user_attr("note", "its owner is disabled or gone: no trial is queued")
                return
            ctx = RequestContext(client=f"sweep:{study.study_name}")
            for _ in range(min(wanted, self._free_slots(owner))):
                try:
                    self._queue_trial(owner, study, request, ctx)
                except LoralabError as err:  # e.g. the dataset was deleted: said on the sweep
                    study.set_user_attr("note", f"a trial was not queued: {err}"[:500])
                    log.warning("sweep %s: a trial was not queued: %s", study.study_name, err)
                    return

    def _owner(self, owner_id: int) -> Actor | None:
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.id == owner_id))
            if user is None or user.disabled:
                return None
            return Actor(id=user.id, username=user.username, role=user.role)

    def _tell_finished(self, study: optuna.Study) -> None:
        """Tell the study the result of each trial whose job has finished: the metric of a
        succeeded job, PRUNED for a job the pruner stopped, FAIL otherwise."""
        from optuna.trial import TrialState

        metric = study.user_attrs["metric"]
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            job = self._job(trial.user_attrs.get("job_id"))
            if job is None or job.state not in states.TERMINAL:
                continue
            value = self._final_metric(job, metric) if job.state == states.SUCCEEDED else None
            pruned = job.state == states.CANCELLED and "pruned_at" in trial.user_attrs
            try:
                if pruned:
                    study.tell(trial.number, state=TrialState.PRUNED)
                elif value is None:
                    study.tell(trial.number, state=TrialState.FAIL)
                else:
                    study.tell(trial.number, value)
            except (RuntimeError, ValueError) as err:  # another reader told it first
                log.info("sweep %s trial %d: %s", study.study_name, trial.number, err)

    def _job(self, job_id: str | None) -> JobView | None:
        """A trial's job, read as the system (the sweep was checked for its reader)."""
        if not job_id:
            return None
        try:
            return self.jobs.get(SYSTEM, job_id)
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
        request = SweepRequest.model_validate(attrs["request"])
        told = study.get_trials(deepcopy=False)
        trials = []
        for trial in sorted(told, key=lambda t: t.number):
            job_id = trial.user_attrs.get("job_id")
            job = self._job(job_id)
            trials.append(
                TrialView(
                    number=trial.number,
                    state=trial.state.name,
                    value=trial.value if trial.state == TrialState.COMPLETE else None,
                    params=dict(trial.user_attrs.get("settings") or trial.params),
                    job_id=job_id,
                    job_state=job.state if job else None,
                    run_id=job.run_id if job else None,
                    error=job.error if job else trial.user_attrs.get("error"),
                )
            )
        done = [t for t in trials if t.state == TrialState.COMPLETE.name and t.value is not None]
        best = max(done, key=lambda t: (t.value or 0.0, -t.number)) if done else None
        running = any(t.state in {"RUNNING", "WAITING"} for t in trials)
        made = _queued(told)
        if running:
            state = "running"
        elif attrs.get("cancelled"):
            state = "cancelled"
        else:
            state = "running" if made < request.trials and not attrs.get("note") else "finished"
        return SweepView(
            sweep_id=study.study_name,
            name=attrs.get("name"),
            owner=attrs.get("owner"),
            metric=str(attrs.get("metric")),
            state=state,
            created_at=attrs.get("created_at"),
            planned=request.trials,
            parallel=request.at_once,
            trials=trials,
            best=best,
            note=attrs.get("note"),
        )


def _queued(trials: list[FrozenTrial]) -> int:
    """Trials the budget counts: all but those whose job was refused."""
    return sum(1 for t in trials if not t.user_attrs.get(NOT_QUEUED))


@contextmanager
def _sweep_lock(db: Database, sweep_id: str) -> Iterator[None]:
    """One advance of a sweep at a time: a lock in this process and, on PostgreSQL, an advisory
    lock on the sweep held by a transaction until the block ends (other machines wait)."""
    with _advancing:
        if not db.is_postgres:
            yield
            return
        with db.session() as session:
            serialise_name(session, SWEEP_LOCK_KEY, sweep_id)
            yield
