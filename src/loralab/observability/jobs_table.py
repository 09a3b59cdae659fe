"""Job metrics computed at scrape time from the jobs table, the source of truth about jobs.

Counting in the database instead of in the workers means a worker killed mid-job, restarted or
moved to another machine never loses or double-counts an outcome, and no multiprocess mode is
needed: the API process runs a few GROUP BY queries per scrape (indexed on ``state``). The
"counters" only go up, because terminal rows are never deleted; a restored backup would lower
them, which Prometheus treats as a counter reset.

Labels: ``queue`` (cpu / cuda / mps; other values are dropped) and ``reason`` (a fixed set).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from loralab.infra.db import AuditRecord, Database, Job, utcnow
from loralab.infra.queue import QUEUES
from loralab.observability.reasons import CANCELLED, known_reason

# Minutes to hours: a LoRA job on CPU takes minutes, a large model on a big set hours.
DURATION_BUCKETS: tuple[float, ...] = (
    30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip
RUNNING_STATES = ("validating", "training", "evaluating", "registering")
MAX_AUDIT_ACTIONS = 50  # actions come from code; a cap keeps a surprise from exploding series


class JobTableCollector(Collector):
    """``task_success_total``, ``task_failure_total``, ``task_queue_length``,
    ``task_duration_seconds``, ``loralab_jobs_running`` and
    ``loralab_job_heartbeat_age_seconds``, from the jobs table."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def describe(self) -> list[Metric]:
        """The families, without querying (registering must not touch the database)."""
        return [
            *outcome_families([]),
            queue_length_family([]),
            *running_families([], self.clock()),
            duration_family([]),
        ]

    def collect(self) -> Iterator[Metric]:
        with self.db.session() as session:
            ended = session.execute(
                select(Job.queue, Job.state, Job.failure_reason, func.count())
                .where(Job.state.in_(("succeeded", "failed", "cancelled")))
                .group_by(Job.queue, Job.state, Job.failure_reason)
            ).all()
            waiting = session.execute(
                select(Job.queue, func.count()).where(Job.state == "queued").group_by(Job.queue)
            ).all()
            running = session.execute(
                select(Job.queue, Job.heartbeat_at).where(Job.state.in_(RUNNING_STATES))
            ).all()
            durations = session.execute(self._duration_query()).all()
        yield from outcome_families(ended)
        yield queue_length_family(waiting)
        yield from running_families(running, self.clock())
        yield duration_family(durations)

    def _duration_query(self) -> Any:
        seconds = duration_seconds(self.db.is_postgres)
        ended = Job.state.in_(("succeeded", "failed", "cancelled"))
        counts = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
        return (
            select(Job.queue, func.count(), func.coalesce(func.sum(seconds), 0.0), *counts)
            .where(ended, Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .group_by(Job.queue)
        )


def duration_seconds(postgres: bool) -> ColumnElement[Any]:
    """``finished_at - started_at`` in seconds, in SQL (PostgreSQL or SQLite)."""
    if postgres:
        return func.extract("epoch", Job.finished_at - Job.started_at)
    day = literal(86400.0)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * day


def outcome_families(rows: Any) -> Iterator[CounterMetricFamily]:
    """Rows ``(queue, state, failure_reason, count)`` -> the success and failure counters."""
    success = CounterMetricFamily(
        "task_success", "Training jobs that ended succeeded.", labels=["queue"]
    )
    failure = CounterMetricFamily(
        "task_failure",
        "Training jobs that ended failed or cancelled, per reason "
        "(data, oom, nan, disk_full, worker_lost, cancelled, error).",
        labels=["queue", "reason"],
    )
    ok = dict.fromkeys(QUEUES, 0)
    failed: dict[tuple[str, str], int] = {}
    for queue, state, reason, count in rows:
        if queue not in ok:
            continue
        if state == "succeeded":
            ok[queue] += count
            continue
        key = (queue, CANCELLED if state == "cancelled" else known_reason(reason))
        failed[key] = failed.get(key, 0) + count
    for queue, count in ok.items():
        success.add_metric([queue], count)
    for (queue, reason), count in sorted(failed.items()):
        failure.add_metric([queue, reason], count)
    yield success
    yield failure


def queue_length_family(rows: Any) -> GaugeMetricFamily:
    """Rows ``(queue, count)`` of queued jobs -> one series per known queue (0 when empty)."""
    family = GaugeMetricFamily(
        "task_queue_length", "Training jobs waiting for a worker, per queue.", labels=["queue"]
    )
    counts = dict.fromkeys(QUEUES, 0)
    for queue, count in rows:
        if queue in counts:
            counts[queue] = count
    for queue, count in counts.items():
        family.add_metric([queue], count)
    return family


def running_families(rows: Any, now: datetime) -> Iterator[GaugeMetricFamily]:
    """Rows ``(queue, heartbeat_at)`` of running jobs -> how many run and the oldest heartbeat."""
    running = GaugeMetricFamily(
        "loralab_jobs_running", "Training jobs a worker is running, per queue.", labels=["queue"]
    )
    age = GaugeMetricFamily(
        "loralab_job_heartbeat_age_seconds",
        "Oldest heartbeat among running jobs, per queue (0 when none run): a stuck or dead "
        "worker shows as a growing age.",
        labels=["queue"],
    )
    counts = dict.fromkeys(QUEUES, 0)
    oldest = dict.fromkeys(QUEUES, 0.0)
    for queue, beat in rows:
        if queue not in counts:
            continue
        counts[queue] += 1
        if beat is not None:
            oldest[queue] = max(oldest[queue], (now - _aware(beat)).total_seconds())
    for queue in QUEUES:
        running.add_metric([queue], counts[queue])
        age.add_metric([queue], oldest[queue])
    yield running
    yield age


def duration_family(rows: Any) -> HistogramMetricFamily:
    """Rows ``(queue, count, sum, n<=bucket...)`` -> ``task_duration_seconds`` per queue."""
    family = HistogramMetricFamily(
        "task_duration_seconds",
        "Wall time of finished training jobs, from start to terminal state.",
        labels=["queue"],
    )
    seen = {row[0]: row for row in rows}
    for queue in QUEUES:
        row = seen.get(queue)
        count = int(row[1]) if row else 0
        total = float(row[2] or 0.0) if row else 0.0
        cumulative = [int(n or 0) for n in row[3:]] if row else [0] * len(DURATION_BUCKETS)
        buckets = [(_le(b), float(n)) for b, n in zip(DURATION_BUCKETS, cumulative, strict=True)]
        family.add_metric([queue], [*buckets, ("+Inf", float(count))], total)
    return family


class AuditEventsCollector(Collector):
    """``loralab_audit_events_total{action, outcome}`` from the audit log: sign-ins allowed and
    denied, registry transitions, uploads... counted where they are recorded.

    The log only grows, and its ids commit in order (entries are appended one by one under the
    audit write lock), so a scrape counts only the entries after the last id it saw and adds them
    to the running totals: one range query on the primary key, not a scan of the whole log.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._counts: dict[tuple[str, str], int] = {}
        self._seen = 0  # the highest audit id counted
        self._lock = threading.Lock()  # scrapes may run on concurrent threads

    def describe(self) -> list[CounterMetricFamily]:
        return [_audit_events_family()]

    def collect(self) -> Iterator[CounterMetricFamily]:
        with self._lock:
            with self.db.session() as session:
                rows = session.execute(
                    select(
                        AuditRecord.action,
                        AuditRecord.outcome,
                        func.count(),
                        func.max(AuditRecord.id),
                    )
                    .where(AuditRecord.id > self._seen)
                    .group_by(AuditRecord.action, AuditRecord.outcome)
                ).all()
            for action, outcome, count, last in rows:
                key = (str(action)[:64], str(outcome)[:16])
                if key in self._counts or len(self._counts) < MAX_AUDIT_ACTIONS * 3:
                    self._counts[key] = self._counts.get(key, 0) + count
                self._seen = max(self._seen, int(last))
            totals = sorted(self._counts.items())
        family = _audit_events_family()
        for labels, count in totals:
            family.add_metric(list(labels), count)
        yield family


class AuditChainCollector(Collector):
    """``loralab_audit_chain_valid`` (1 or 0) from a verification at most every ``interval``
    seconds (verifying walks the whole log), and when it last ran."""

    def __init__(
        self,
        verify: Callable[[], bool],
        interval: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.verify = verify
        self.interval = interval
        self.clock = clock or time.time
        self._checked_at: float | None = None
        self._valid = 1.0

    def describe(self) -> list[GaugeMetricFamily]:
        """The families, without verifying (registering must not walk the audit log)."""
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.interval:
            try:
                self._valid = 1.0 if self.verify() else 0.0
            except Exception:  # noqa: BLE001 - cannot read the log: not known valid
                self._valid = 0.0
            self._checked_at = now
        yield from self._families()

    def _families(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "loralab_audit_chain_valid",
            "1 when the audit log's hash chain verified at the last check, else 0.",
            self._valid,
        )
        yield GaugeMetricFamily(
            "loralab_audit_verified_timestamp_seconds",
            "When the audit chain was last verified (Unix time).",
            self._checked_at,
        )


def _audit_events_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "loralab_audit_events",
        "Audited actions per action and outcome (allowed, denied, failed).",
        labels=["action", "outcome"],
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _le(bound: float) -> str:
    return str(float(bound))


def register_platform_collectors(
    registry: Any, db: Database, verify_audit: Callable[[], bool], audit_interval: float
) -> None:
    """Add the job, audit-event and audit-chain collectors to the API's ``registry`` (once:
    an app built twice on the same services must not register them twice)."""
    if getattr(registry, "_loralab_platform", False):
        return
    registry.register(JobTableCollector(db))
    registry.register(AuditEventsCollector(db))
    registry.register(AuditChainCollector(verify_audit, audit_interval))
    registry._loralab_platform = True
