"""Send again the jobs the broker or a dead worker lost.

Two kinds: a running job whose heartbeat is older than ``queue.stale_after_seconds`` (its worker
died: the job goes back to queued, its lease released, and resumes from its checkpoint), and a
queued job not touched for that long that the broker does not hold: never sent
(``published_at`` is NULL: the broker was down at submit) or forgotten (Redis restarted without
its data; a :class:`TrackedQueue` tells, by its sent markers that last the visibility timeout).
A queued job whose message still waits in the broker is not sent again. Sending a job twice is
safe anyway (execution is leased and idempotent); a queue that cannot tell gets each waiting job
at most once per ``stale_after_seconds``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from loralab.infra.db import Database, Job, utcnow
from loralab.infra.queue import JobQueue, TrackedQueue
from loralab.infra.threads import every
from loralab.jobs import states
from loralab.settings import Settings

log = logging.getLogger("loralab.jobs")
SWEEP_SECONDS = 30.0


def requeue_stale(db: Database, settings: Settings, queue: JobQueue) -> list[str]:
    """Requeue dead running jobs and long-waiting queued ones; return their ids."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.queue.stale_after_seconds)
    dead = or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)
    sent: list[tuple[str, str]] = []
    with db.session() as session:
        candidates = session.execute(
            select(Job.id, Job.queue, Job.state).where(
                or_(
                    Job.state.in_(states.RUNNING) & dead,
                    (Job.state == states.QUEUED) & (Job.updated_at < cutoff),
                )
            )
        ).all()
        lost = _not_in_broker(session, queue, [j for j, _, s in candidates if s == states.QUEUED])
        for job_id, queue_name, state in candidates:
            if state == states.QUEUED and job_id not in lost:
                continue  # its message still waits in the broker
            guard = dead if state in states.RUNNING else Job.updated_at < cutoff
            if _take_back(session, job_id, state, guard, now):
                sent.append((job_id, queue_name))
    for job_id, queue_name in sent:  # after commit: a worker must find the row queued
        queue.enqueue(job_id, queue_name)
    if sent:
        log.warning("requeued %d lost job(s): %s", len(sent), ", ".join(j for j, _ in sent))
    return [job_id for job_id, _ in sent]


def _take_back(session: Session, job_id: str, state: str, guard: Any, now: datetime) -> bool:
    """Queued again and stamped as published now, if still as found (conditional, so a
    worker that heartbeats right now keeps its job)."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == state, guard)
        .values(
            state=states.QUEUED, worker=None, heartbeat_at=None, updated_at=now, published_at=now
        )
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _not_in_broker(session: Session, queue: JobQueue, job_ids: list[str]) -> set[str]:
    """The queued jobs among ``job_ids`` the broker does not hold: never published, or
    forgotten by it. A queue that cannot tell: all of them (sent again, harmlessly)."""
    if not isinstance(queue, TrackedQueue):
        return set(job_ids)
    rows = session.execute(select(Job.id, Job.published_at).where(Job.id.in_(job_ids))).all()
    never = {job_id for job_id, published in rows if published is None}
    return never | queue.forgotten([job_id for job_id, published in rows if published is not None])


def sweep_interval(settings: Settings) -> float:
    """Every 30 s, or more often when jobs go stale sooner (tests use a few seconds)."""
    return min(SWEEP_SECONDS, max(0.5, settings.queue.stale_after_seconds / 2))


def start_recovery(
    db: Database, settings: Settings, queue: JobQueue, stop: threading.Event
) -> threading.Thread:
    """Run :func:`requeue_stale` now and then every :func:`sweep_interval` until ``stop``
    (the database or the broker down: the next sweep tries again)."""
    return every(
        sweep_interval(settings),
        lambda: requeue_stale(db, settings, queue),
        stop,
        name="loralab-recovery",
        failure="stale-job sweep failed",
    )
