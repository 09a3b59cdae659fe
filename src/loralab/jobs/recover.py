"""Send again the jobs the broker or a dead worker lost.

Two kinds: a running job whose heartbeat is older than ``queue.stale_after_seconds`` (its worker
died: the job goes back to queued, its lease released, and resumes from its checkpoint), and a
queued job not touched for that long (the broker may have lost it, e.g. Redis restarted without
persistence). Sending a job twice is safe: execution is leased and idempotent. Each job is sent
at most once per ``stale_after_seconds``.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import or_, select, update

from loralab.infra.db import Database, Job, utcnow
from loralab.infra.queue import JobQueue
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
        for job_id, queue_name, state in candidates:
            guard = dead if state in states.RUNNING else Job.updated_at < cutoff
            # Conditional, so a worker that heartbeats right now keeps its job.
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == state, guard)
                .values(state=states.QUEUED, worker=None, heartbeat_at=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                sent.append((job_id, queue_name))
    for job_id, queue_name in sent:  # after commit: a worker must find the row queued
        queue.enqueue(job_id, queue_name)
    if sent:
        log.warning("requeued %d lost job(s): %s", len(sent), ", ".join(j for j, _ in sent))
    return [job_id for job_id, _ in sent]


def sweep_interval(settings: Settings) -> float:
    """Every 30 s, or more often when jobs go stale sooner (tests use a few seconds)."""
    return min(SWEEP_SECONDS, max(0.5, settings.queue.stale_after_seconds / 2))


def start_recovery(
    db: Database, settings: Settings, queue: JobQueue, stop: threading.Event
) -> threading.Thread:
    """Run :func:`requeue_stale` now and then every :func:`sweep_interval` until ``stop``."""

    def loop() -> None:
        interval = sweep_interval(settings)
        while True:
            try:
                requeue_stale(db, settings, queue)
            except Exception as err:  # noqa: BLE001 - DB or broker down: try again next sweep
                log.warning("stale-job sweep failed: %s", err)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="loralab-recovery", daemon=True)
    thread.start()
    return thread
