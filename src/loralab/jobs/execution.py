"""One delivery of a job to a worker: claim a lease, train (or resume), record the outcome.

Deliveries may repeat (broker redelivery, the recovery sweep), so a delivery first claims the
job in one conditional UPDATE: it wins only if the job is not finished and nobody holds a fresh
lease. Every later write names the lease holder (``worker``) and a non-terminal state, so a
worker that lost its lease can no longer change the job. A worker that died leaves a stale
heartbeat; the next delivery resumes the run from its last complete checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update

from loralab.errors import LoralabError
from loralab.infra.db import Database, Job, User, utcnow
from loralab.jobs import states
from loralab.jobs.watch import RunWatch, WatchFor
from loralab.observability.logs import job_context
from loralab.observability.reasons import WORKER_LOST, failure_reason
from loralab.settings import QueueSettings, Settings
from loralab.training.checkpoints import last_complete
from loralab.training.config import TrainConfig
from loralab.training.interfaces import AnyStop, MetricLogger, StopSignal
from loralab.training.runs import RunNotFound, RunPaths, find_run, new_run_id, read_state

if TYPE_CHECKING:
    from loralab.training.loop import TrainResult

log = logging.getLogger("loralab.jobs")
Observe = Callable[[MetricLogger], MetricLogger]
WRITE_INTERVAL = 0.5  # seconds between progress writes (at most 2 a second)
GAVE_UP = "gave up after {n} attempts: the job kept killing its worker"


@dataclass(frozen=True)
class Claim:
    """What a delivery needs of the job row it won."""

    job_id: str
    worker: str
    attempts: int
    config: dict[str, Any]
    model_name: str | None
    owner: str | None
    run_id: str | None
    cancel_requested: bool
    sweep: tuple[str, int] | None = None  # (sweep id, trial number) of a sweep's trial


@dataclass(frozen=True)
class Outcome:
    state: str
    error: str | None = None
    fields: dict[str, Any] | None = None


def claim_job(db: Database, queue: QueueSettings, job_id: str, worker: str) -> Claim | None:
    """Take the job's lease (state validating, attempts + 1), or None if someone else holds
    a fresh lease or the job is finished."""
    now = utcnow()
    stale = now - timedelta(seconds=queue.stale_after_seconds)
    with db.session() as session:
        won = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.not_in(states.TERMINAL))
            .where(or_(Job.worker.is_(None), Job.heartbeat_at < stale, Job.worker == worker))
            .values(
                worker=worker,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
                state=states.VALIDATING,
                started_at=func.coalesce(Job.started_at, now),
            )
            .execution_options(synchronize_session=False)
        )
        if not won.rowcount:  # type: ignore[attr-defined]
            return None
        row = session.get(Job, job_id, populate_existing=True)
        assert row is not None
        owner = session.scalar(select(User.username).where(User.id == row.owner_id))
        return Claim(
            job_id,
            worker,
            row.attempts,
            dict(row.config),
            row.model_name,
            owner,
            row.run_id,
            bool(row.cancel_requested),
            _sweep_link(row),
        )


def _sweep_link(row: Job) -> tuple[str, int] | None:
    if row.sweep_id is None or row.sweep_trial is None:
        return None
    return row.sweep_id, row.sweep_trial


def write_job(db: Database, claim: Claim, **values: Any) -> bool:
    """Update the job if this worker still holds its lease and it is not finished."""
    with db.session() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == claim.job_id, Job.worker == claim.worker)
            .where(Job.state.not_in(states.TERMINAL))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]


class Lease:
    """Heartbeats the lease on a thread; ``lost`` is set once another worker took the job."""

    def __init__(self, db: Database, claim: Claim, interval: float) -> None:
        self.db, self.claim, self.interval = db, claim, interval
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="loralab-heartbeat", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                if not write_job(self.db, self.claim, heartbeat_at=utcnow()):
                    log.warning("job %s: lease lost; stopping", self.claim.job_id)
                    self.lost.set()
                    return
            except Exception as err:  # noqa: BLE001 - a DB hiccup: try again next beat
                log.warning("job %s: heartbeat failed: %s", self.claim.job_id, err)


class JobStop:
    """StopSignal: the user asked to cancel (read at most every WRITE_INTERVAL) or the lease
    is lost."""

    def __init__(self, db: Database, claim: Claim, lease: Lease) -> None:
        self.db, self.claim, self.lease = db, claim, lease
        self.cancelled = claim.cancel_requested
        self._read_at = 0.0

    def is_set(self) -> bool:
        if self.lease.lost.is_set() or self.cancelled:
            return True
        now = time.monotonic()
        if now - self._read_at >= WRITE_INTERVAL:
            self._read_at = now
            with self.db.session() as session:
                flag = session.scalar(
                    select(Job.cancel_requested).where(Job.id == self.claim.job_id)
                )
            self.cancelled = bool(flag)
        return self.cancelled


def _warnings_of(db: Database, claim: Claim) -> dict[str, Any]:
    """The warnings said at submission (kept in progress: each write replaces it whole)."""
    with db.session() as session:
        progress = session.scalar(select(Job.progress).where(Job.id == claim.job_id)) or {}
    return {"warnings": progress["warnings"]} if progress.get("warnings") else {}


class JobProgress:
    """ProgressReporter that writes state and progress to the job row (throttled)."""

    def __init__(self, db: Database, claim: Claim, config: TrainConfig) -> None:
        self.db, self.claim, self.config = db, claim, config
        self.progress: dict[str, Any] = {"stage": states.VALIDATING, **_warnings_of(db, claim)}
        self.run_id = claim.run_id  # the run this delivery trains or resumes
        self.total = 0
        self._written = 0.0

    def set_state(self, state: str) -> None:
        """Move the job to ``state`` (a running state) and write progress now."""
        self.progress["stage"] = state
        write_job(self.db, self.claim, state=state, progress=dict(self.progress))
        self._written = time.monotonic()

    def start(self, total_steps: int) -> None:
        self.total = max(1, int(total_steps))
        self.progress.update(total_steps=self.total)
        self.set_state(states.TRAINING)

    def advance(self, step: int, values: dict[str, float]) -> None:
        loss = values.get("loss")
        self.progress.update(
            step=int(step),
            percent=round(100.0 * step / self.total, 1) if self.total else 0.0,
            epoch=self._epoch(step),
        )
        if loss is not None and loss == loss:  # NaN: keep the last real loss
            self.progress["loss"] = round(float(loss), 5)
        if time.monotonic() - self._written >= WRITE_INTERVAL:
            write_job(self.db, self.claim, progress=dict(self.progress))
            self._written = time.monotonic()

    def _epoch(self, step: int) -> float | None:
        if self.config.max_steps or not self.total:
            return None  # epochs are not known from steps alone when max_steps caps training
        return round(self.config.epochs * step / self.total, 3)

    def note(self, message: str) -> None:
        if message.startswith("registering model"):
            self.set_state(states.REGISTERING)

    def finish(self) -> None:
        self.set_state(states.EVALUATING)


def execute_job(
    db: Database, settings: Settings, job_id: str, worker: str, watch: WatchFor | None = None
) -> None:
    """One delivery: claim, run, record. Returns quietly if another worker holds the job.
    ``watch``: asked for a watcher of a sweep trial's run (:mod:`loralab.jobs.watch`)."""
    claim = claim_job(db, settings.queue, job_id, worker)
    if claim is None:
        log.info("job %s: not claimed by %s (finished or leased elsewhere)", job_id, worker)
        close_finished_run(db, settings, job_id)  # e.g. cancelled while a dead worker's run hung
        return
    # log lines of this delivery name the job and attempt; the caller's context comes back after
    with job_context(job_id, claim.attempts):
        try:
            _deliver(db, settings, claim, watch)
        finally:
            close_finished_run(db, settings, job_id)


def _deliver(db: Database, settings: Settings, claim: Claim, watch: WatchFor | None) -> None:
    limit = settings.queue.max_attempts
    if claim.attempts > limit:
        gave_up = Outcome(states.FAILED, GAVE_UP.format(n=limit), {"failure_reason": WORKER_LOST})
        finish_job(db, claim, gave_up)
        return
    if claim.cancel_requested:
        finish_job(db, claim, Outcome(states.CANCELLED, "cancelled before training started"))
        return
    with Lease(db, claim, settings.queue.heartbeat_seconds) as lease:
        outcome = run_claimed(db, settings, claim, lease, watch)
    if lease.lost.is_set():
        log.warning("job %s: lease lost; its new holder records the outcome", claim.job_id)
        return
    finish_job(db, claim, outcome)


def close_finished_run(db: Database, settings: Settings, job_id: str) -> None:
    """A finished job leaves no run open: a run its job ended without (a killed worker's, on
    giving up, cancelling or failing) ends failed or stopped, its MLflow run with it."""
    from loralab.experiments import service as experiments

    with db.session() as session:
        found = session.execute(select(Job.state, Job.run_id, Job.error).where(Job.id == job_id))
        row = found.first()
    if row is None or not row.run_id or not states.is_terminal(row.state):
        return
    status = "stopped" if row.state == states.CANCELLED else "failed"
    try:
        experiments.close_run(settings, row.run_id, status=status, error=row.error)
    except Exception as err:  # noqa: BLE001 - the job's outcome is recorded; this is tidying
        log.warning("job %s: cannot close run %s: %s", job_id, row.run_id, err)


def finish_job(db: Database, claim: Claim, outcome: Outcome) -> None:
    """Record the terminal state (only while holding the lease)."""
    values = dict(outcome.fields or {})
    write_job(db, claim, state=outcome.state, error=outcome.error, finished_at=utcnow(), **values)
    log.info(
        "job %s %s%s", claim.job_id, outcome.state, f": {outcome.error}" if outcome.error else ""
    )


def run_claimed(
    db: Database, settings: Settings, claim: Claim, lease: Lease, watch: WatchFor | None = None
) -> Outcome:
    """Train or resume, and turn what happened into an Outcome (never raises)."""
    from loralab.training.errors import TrainingFailed

    config = TrainConfig(**claim.config)
    progress = JobProgress(db, claim, config)
    stop = JobStop(db, claim, lease)
    run = _existing_run(settings, claim.run_id)
    try:
        watcher = watch(claim.sweep) if watch is not None and claim.sweep else None
        return _train_or_resume(db, settings, claim, config, run, progress, stop, watcher)
    except (LoralabError, TrainingFailed) as err:
        return _failed(settings, progress.run_id, str(err), failure_reason(err))
    except Exception as err:  # noqa: BLE001 - any crash ends the job failed, with its reason
        log.exception("job %s crashed", claim.job_id)
        message = f"{type(err).__name__}: {err}"
        return _failed(settings, progress.run_id, message, failure_reason(err))


def _without_server_paths(settings: Settings, message: str) -> str:
    """Users see the error; server folders in it become placeholders."""
    folders = {
        "<datasets>": settings.dataset_store_dir,
        "<results>": settings.storage.results_dir,
        "<models>": settings.storage.models_dir,
    }
    for name, folder in folders.items():
        if folder is not None:
            message = message.replace(str(folder.resolve()), name).replace(str(folder), name)
    return message


def _failed(settings: Settings, run_id: str | None, message: str, reason: str) -> Outcome:
    """A failed outcome; a run id whose folder never appeared (bad input) is cleared."""
    message = _without_server_paths(settings, message)
    fields: dict[str, Any] = {"failure_reason": reason}
    if _existing_run(settings, run_id) is None:
        fields["run_id"] = None
    return Outcome(states.FAILED, message, fields)


def _existing_run(settings: Settings, run_id: str | None) -> RunPaths | None:
    if not run_id:
        return None
    try:
        return find_run(settings.storage.results_dir, run_id)
    except RunNotFound:
        return None


def _train_or_resume(
    db: Database,
    settings: Settings,
    claim: Claim,
    config: TrainConfig,
    run: RunPaths | None,
    progress: JobProgress,
    stop: JobStop,
    watcher: RunWatch | None = None,
) -> Outcome:
    """Resume a run that has a complete checkpoint; otherwise train a new run.

    A run another machine started (its worker died there) is rebuilt here from its checkpoint
    copies in the shared artifact store first, when shared artifacts are on.
    """
    if run is None and claim.run_id:
        run = _rebuilt_run(settings, claim.run_id, config.experiment)
    state = read_state(run) if run else {}
    if run is not None and state.get("status") == "succeeded" and state.get("registered_model"):
        return _succeeded(state)  # finished before the worker died: record it, train nothing
    signal: StopSignal = stop if watcher is None else AnyStop(stop, watcher)
    observe = watcher.observe if watcher is not None else None
    if run is not None and last_complete(run.checkpoints) is not None:
        result = _resume_run(settings, claim, run, progress, signal, observe)
    else:
        if run is not None:  # a worker died before the first checkpoint: nothing to resume
            _abandon(settings, run)
        result = _train_new_run(db, settings, claim, config, progress, signal, observe)
    if result.status == "stopped":
        reason = watcher.reason() if watcher is not None else None
        return Outcome(
            states.CANCELLED, reason or "cancelled by request; the run keeps its last checkpoint"
        )
    return _succeeded(read_state(result.run))


def _rebuilt_run(settings: Settings, run_id: str, experiment: str) -> RunPaths | None:
    """The job's run rebuilt from the shared artifact store (None: nothing to resume; the
    MLflow runs another machine left RUNNING then end KILLED, as a local abandoned run's do)."""
    from loralab.experiments import shared_runs

    run = shared_runs.rebuild_run(settings, run_id, experiment)
    if run is None:
        shared_runs.end_abandoned_tracking(settings, run_id, experiment)
    return run


def _abandon(settings: Settings, run: RunPaths) -> None:
    from loralab.experiments import service as experiments

    experiments.abandon_run(settings, run.run_id)


def _resume_run(
    settings: Settings,
    claim: Claim,
    run: RunPaths,
    progress: JobProgress,
    stop: StopSignal,
    observe: Observe | None,
) -> TrainResult:
    """Continue the run a dead worker left, from its last complete checkpoint."""
    from loralab.experiments import service as experiments

    log.info("job %s: resuming run %s from its last checkpoint", claim.job_id, run.run_id)
    return experiments.resume(
        settings,
        run.run_id,
        [],
        progress,
        stop,
        user=claim.owner,
        model_name=claim.model_name,
        observe=observe,
    )


def _train_new_run(
    db: Database,
    settings: Settings,
    claim: Claim,
    config: TrainConfig,
    progress: JobProgress,
    stop: StopSignal,
    observe: Observe | None,
) -> TrainResult:
    """Name the run on the job first (never an orphan run folder), then train it; a base
    model the job stores by folder name resolves to that folder now, at train time. A job
    keeps one run id: a retry that starts over reuses the id an earlier attempt recorded."""
    from loralab.experiments import service as experiments

    run_id = progress.run_id = claim.run_id or new_run_id()
    if run_id != claim.run_id:
        write_job(db, claim, run_id=run_id)  # before the folder exists: never an orphan run
    return experiments.train(
        settings,
        config,
        progress,
        stop,
        user=claim.owner,
        model_name=claim.model_name,
        run_id=run_id,
        observe=observe,
    )


def _succeeded(state: dict[str, Any]) -> Outcome:
    fields = {"mlflow_run_id": state.get("tracker_run_id")}
    model = state.get("registered_model")
    if not model:
        reason = state.get("registration_error") or "unknown error"
        return Outcome(
            states.FAILED, f"trained, but model registration failed (run kept): {reason}", fields
        )
    return Outcome(states.SUCCEEDED, None, {**fields, "model_version": model})
