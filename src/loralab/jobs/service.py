"""Training jobs: submit, get, list, cancel (for users) and execute (for the worker).

The ``jobs`` table is the truth about a job; the broker only carries its id. Ownership is
checked here, so the API, the CLI and the worker obey the same rules: a user sees and cancels
their own jobs, an admin any job, and a job of someone else looks exactly like a missing one.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loralab.audit.log import AuditLog
from loralab.datasets.uploads import check_visible
from loralab.errors import Conflict, InvalidInput, NotFound, PermissionDenied, TooManyRequests
from loralab.identity import Actor, RequestContext
from loralab.infra.db import Database, Job, User, utcnow
from loralab.infra.queue import JobQueue
from loralab.jobs import statements, states
from loralab.jobs.requests import TrainRequest, to_train_config
from loralab.jobs.views import JobView, ProgressView, StepView
from loralab.jobs.watch import WatchFor
from loralab.jobs.workers import WorkerDirectory
from loralab.settings import Settings
from loralab.training.config import TrainConfig

log = logging.getLogger("loralab.jobs")
MAX_PAGE = 500
SERVED_MEMO_SECONDS = 1.0  # how long a live worker's yes is trusted without asking Redis


def queue_for(device: str) -> str:
    """The broker queue of a device: cuda and mps jobs need a worker with that device."""
    return device if device in {"cuda", "mps"} else "cpu"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None  # stored times read back as aware UTC


def _dispatch(row: Job) -> str | None:
    """Queued jobs: ``sent`` once the broker took the id, ``deferred`` until then."""
    if row.state != states.QUEUED:
        return None
    return "deferred" if row.published_at is None else "sent"


class JobService:
    """Submit, read, cancel and execute training jobs."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        queue: JobQueue,
        audit: AuditLog,
        workers: WorkerDirectory | None = None,
    ) -> None:
        """``workers``: who serves which queue (worker heartbeats); None: not checked."""
        self.db = db
        self.settings = settings
        self.queue = queue
        self.audit = audit
        self.workers = workers
        self._served_until: dict[str, float] = {}  # queue -> monotonic time a yes holds until

    # -- users ---------------------------------------------------------------------------------
    def submit(
        self,
        actor: Actor,
        request: TrainRequest,
        ctx: RequestContext,
        *,
        trial: tuple[str, int] | None = None,
    ) -> JobView:
        """Queue a training job for ``actor``; at most ``max_active_per_user`` active jobs.

        ``trial``: (sweep id, trial number) when a sweep queues the job for one of its
        trials (the worker then reports the run's evaluations to that trial).

        Datasets must be visible to the actor (theirs, shared, or any for an admin); one that
        is not is refused exactly like one that does not exist.

        The row is committed before the broker hears of it, so a worker always finds it; a
        broker that is down leaves the job queued with ``published_at`` empty, and the
        recovery sweep sends it once the broker is back: the view says ``dispatch="deferred"``.
        """
        request = self.pin_datasets(actor, request)
        config = to_train_config(self.settings, request)
        warnings = self._language_warnings(config, request)
        job_id = str(uuid.uuid4())
        queue = queue_for(config.device)
        warnings = (*warnings, *self._unserved(queue))
        limit = self.settings.queue.max_active_per_user
        with self.db.session() as session:
            row = self._insert_within_limit(
                session, actor, job_id, config.to_dict(), request, {"warnings": [*warnings]}, trial
            )
            allowed = row is not None
            self._audit(session, actor, ctx, "job.submit", job_id, allowed, {"queue": queue})
        if row is None:
            raise TooManyRequests(
                f"you have {limit} active jobs (the most allowed): wait for one to finish "
                "or cancel one",
                retry_after=30,
            )
        sent = self._send(job_id, queue)
        with self.db.session() as session:  # the stamp and the view: one transaction
            if sent:
                row.published_at = self._stamp_published(session, job_id)
            return self._view(session, row, owner=actor.username)

    def get(self, actor: Actor, job_id: str) -> JobView:
        """One job, for its owner or an admin; anyone else gets the same NotFound as a typo."""
        with self.db.session() as session:
            row = self._visible(session, actor, job_id)
            return self._view(session, row)

    def list(
        self,
        actor: Actor,
        user: str | None = None,
        state: str | None = None,
        limit: int = 50,
        offset: int = 0,
        everyone: bool = False,
    ) -> list[JobView]:
        """The actor's jobs, newest first; admins may name another user or ask for everyone's."""
        if state is not None and state not in states.ALL_STATES:
            raise InvalidInput(
                f"state: {state!r} is not one of {', '.join(sorted(states.ALL_STATES))}"
            )
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidInput(f"limit: 1 to {MAX_PAGE}; offset: 0 or more")
        if user is not None and user != actor.username and not actor.is_admin:
            raise PermissionDenied("only an admin may list another user's jobs")
        if everyone and not actor.is_admin:
            raise PermissionDenied("only an admin may list every user's jobs")
        with self.db.session() as session:
            query = select(Job).join(User, User.id == Job.owner_id)
            if user:
                query = query.where(User.username == user)
            elif not everyone:
                query = query.where(Job.owner_id == actor.id)
            if state is not None:
                query = query.where(Job.state == state)
            query = query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
            return [self._view(session, row) for row in session.scalars(query)]

    def cancel(self, actor: Actor, job_id: str, ctx: RequestContext) -> JobView:
        """Queued: cancelled at once. Running: the worker stops at its next step and ends the
        job cancelled. Finished: Conflict."""
        with self.db.session() as session:
            row = self._visible(session, actor, job_id)
            if states.is_terminal(row.state):
                self._audit(session, actor, ctx, "job.cancel", job_id, False, {"state": row.state})
                conflict = f"job {job_id} already {row.state}"
            else:
                conflict = None
                how = self._cancel_row(session, job_id)
                self._audit(session, actor, ctx, "job.cancel", job_id, True, {"how": how})
        if conflict:
            raise Conflict(conflict)
        return self._view_of(job_id)

    # -- worker --------------------------------------------------------------------------------
    def execute(self, job_id: str, worker: str, watch: WatchFor | None = None) -> None:
        """Run one delivery of a job (idempotent; see :mod:`loralab.jobs.execution`).
        ``watch``: what observes a claimed job's training (a sweep's trials: its pruner)."""
        from loralab.jobs.execution import execute_job

        execute_job(self.db, self.settings, job_id, worker, watch)

    def sweep_of(self, job_id: str) -> tuple[str, int] | None:
        """(sweep id, trial number) of a job a sweep queued; None for any other job."""
        with self.db.session() as session:
            found = session.execute(
                select(Job.sweep_id, Job.sweep_trial).where(Job.id == job_id)
            ).first()
        if found is None or found.sweep_id is None or found.sweep_trial is None:
            return None
        return str(found.sweep_id), int(found.sweep_trial)

    # -- helpers -------------------------------------------------------------------------------
    def pin_datasets(self, actor: Actor, request: TrainRequest) -> TrainRequest:
        """Each named dataset version, if the actor may use it, pinned to ``NAME@vN``: the
        worker trains on exactly the version checked here, whatever is uploaded later."""
        pinned = {
            field: check_visible(self.settings, self.db, actor, field, ref)
            for field in ("train_file", "validation_file")
            if (ref := getattr(request, field)) is not None
        }
        return request.model_copy(update=pinned)

    def _language_warnings(self, config: TrainConfig, request: TrainRequest) -> tuple[str, ...]:
        """The language-mismatch warning (none or one) for a job, before any model
        loads; an error unless the request or ``datasets.api_language_mismatch`` allows it."""
        from loralab.datasets.service import language_fit
        from loralab.experiments.service import base_model_source

        source = base_model_source(self.settings, config.base_model)
        warning = language_fit(self.settings, config.train_file, config.base_model, source)
        if warning is None:
            return ()
        lenient = self.settings.datasets.api_language_mismatch == "warn"
        if not (lenient or request.allow_language_mismatch):
            raise InvalidInput(
                f"{warning[0].upper()}{warning[1:]} To train anyway, set allow_language_mismatch."
            )
        return (warning,)

    def _unserved(self, queue: str) -> tuple[str, ...]:
        """A queue no live worker serves: Conflict, or (``queue.refuse_unserved`` off) a
        warning the job view shows. Unknown (no directory, Redis down): nothing said."""
        if self.workers is None or self._served(self.workers, queue) is not False:
            return ()
        message = f"no worker serves the {queue} queue"
        if self.settings.queue.refuse_unserved:
            hint = " (train on another device, or ask an operator to start one)"
            raise Conflict(f"{message}: the job would never start{hint}")
        return (f"{message} right now: the job waits until one starts",)

    def _served(self, workers: WorkerDirectory, queue: str) -> bool | None:
        """``workers.serves(queue)``, where a yes is remembered for ``SERVED_MEMO_SECONDS``:
        a worker's heartbeat outlives it by up to ``queue.worker_ttl_seconds`` anyway, so a
        second more changes nothing, and a busy API asks Redis once a second instead of once
        a job. A no or an unknown is asked again every time: a worker that just started is
        seen at once."""
        now = time.monotonic()
        if self._served_until.get(queue, 0.0) > now:
            return True
        answer = workers.serves(queue)
        if answer:
            self._served_until[queue] = now + SERVED_MEMO_SECONDS
        return answer

    def _insert_within_limit(
        self,
        session: Session,
        actor: Actor,
        job_id: str,
        config: dict[str, Any],
        request: TrainRequest,
        progress: dict[str, Any] | None = None,
        trial: tuple[str, int] | None = None,
    ) -> Job | None:
        """Insert the job only if the owner has fewer active jobs than allowed, in one
        statement (SQLite), behind a lock on the owner's row (PostgreSQL). Returns the row as
        inserted (not attached to the session), or None when the limit refused it."""
        if self.db.is_postgres:
            session.execute(statements.lock_owner(), {"owner": actor.id})
        now = utcnow()
        values: dict[str, Any] = {
            "id": job_id,
            "owner_id": actor.id,
            "state": states.QUEUED,
            "config": config,
            "model_name": request.model_name,
            "queue": queue_for(str(config.get("device"))),
            "attempts": 0,
            "cancel_requested": False,
            "progress": progress or {},
            "sweep_id": trial[0] if trial else None,
            "sweep_trial": trial[1] if trial else None,
            "created_at": now,
            "updated_at": now,
        }
        limit = self.settings.queue.max_active_per_user
        inserted = session.execute(
            statements.insert_within_limit(), {**values, "owner": actor.id, "limit": limit}
        )
        if inserted.scalar() is None:
            return None
        return Job(**values)

    def _send(self, job_id: str, queue: str) -> bool:
        """Hand the id to the broker; False if the broker is down (the row stays unstamped)."""
        try:
            self.queue.enqueue(job_id, queue)
        except Exception as err:  # noqa: BLE001 - the row is the truth; recovery resends it
            log.warning(
                "job %s queued but not sent to the broker (%s): recovery resends it", job_id, err
            )
            return False
        return True

    @staticmethod
    def _stamp_published(session: Session, job_id: str) -> datetime:
        """``published_at`` of a job the broker took (after the row's own transaction: the row
        is committed before the broker hears of it)."""
        now = utcnow()
        session.execute(statements.stamp_published(), {"job_id": job_id, "now": now})
        return now

    def _visible(self, session: Session, actor: Actor, job_id: str) -> Job:
        row = session.get(Job, job_id) if len(job_id) <= 36 else None
        if row is None or (row.owner_id != actor.id and not actor.is_admin):
            raise NotFound(f"no job {job_id!r}")
        return row

    def _cancel_row(self, session: Session, job_id: str) -> str:
        """Atomically: queued -> cancelled, else a running job gets cancel_requested."""
        now = utcnow()
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == states.QUEUED)
            .values(state=states.CANCELLED, finished_at=now, error="cancelled before it started")
        )
        if done.rowcount:  # type: ignore[attr-defined]
            return "cancelled"
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.in_(states.RUNNING))
            .values(cancel_requested=True)
        )
        return "requested"

    def _audit(
        self,
        session: Session,
        actor: Actor,
        ctx: RequestContext,
        action: str,
        job_id: str,
        allowed: bool,
        detail: dict[str, Any],
    ) -> None:
        outcome = "allowed" if allowed else "denied"
        self.audit.record_by(
            session, actor, ctx, action=action, outcome=outcome, target=f"job:{job_id}",
            detail=detail,
        )  # fmt: skip

    def _view_of(self, job_id: str) -> JobView:
        with self.db.session() as session:
            row = session.get(Job, job_id)
            if row is None:  # pragma: no cover - just written
                raise NotFound(f"no job {job_id!r}")
            return self._view(session, row)

    def _view(self, session: Session, row: Job, owner: str | None = None) -> JobView:
        """What the API and the UI show of a job (``owner``: the owner's name, when known)."""
        if owner is None:
            owner = session.scalar(select(User.username).where(User.id == row.owner_id))
        progress = dict(row.progress or {})
        steps = states.stepper({"state": row.state, "last_step": progress.get("stage")})
        return JobView(
            task_id=row.id,
            owner=owner,
            state=row.state,
            steps=[StepView(name=s["name"], status=s["status"]) for s in steps],
            progress=ProgressView(
                **{k: progress.get(k) for k in ("epoch", "step", "total_steps", "percent", "loss")}
            ),
            error=row.error,
            cancel_requested=bool(row.cancel_requested),
            experiment=row.config.get("experiment"),
            base_model=str(row.config.get("base_model", "")),  # a name, never a path
            model_name=row.model_name,
            run_id=row.run_id,
            mlflow_run_id=row.mlflow_run_id,
            model_version=row.model_version,
            queue=row.queue,
            attempts=row.attempts,
            created_at=_iso(row.created_at),
            started_at=_iso(row.started_at),
            finished_at=_iso(row.finished_at),
            queue_position=self._position(session, row) if row.state == states.QUEUED else None,
            dispatch=_dispatch(row),
            warnings=tuple(str(w) for w in progress.get("warnings") or ()),
        )

    def _position(self, session: Session, row: Job) -> int:
        """1 for the next job of its queue to start."""
        ahead = session.scalar(
            statements.queued_ahead(),
            {"queue": row.queue, "created": row.created_at, "job_id": row.id},
        )
        return int(ahead or 0) + 1
