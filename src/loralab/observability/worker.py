"""A Celery worker's own Prometheus endpoint: what only the worker process knows.

Job outcomes, queue length and durations are counted from the jobs table by the API (see
:mod:`loralab.observability.jobs_table`), so a killed worker loses no count. A worker exports
what is about its own machine and the jobs it runs now, on
``observability.worker_metrics_port`` (its main process; the task runs in a pool child, so the
per-job figures are read from the job rows this worker holds, at scrape time):

- ``loralab_training_progress_ratio{queue}`` and ``loralab_training_samples_per_second{queue}``
  of the jobs this worker runs;
- ``loralab_worker_heartbeat_timestamp_seconds``: the last time this worker reached its
  database (a thread, every ``HEARTBEAT_SECONDS``);
- ``system_*``, ``process_*``, ``python_*`` and, on a GPU machine, GPU memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select, text

from loralab.infra.db import Database, Job
from loralab.infra.queue import QUEUES
from loralab.infra.threads import every
from loralab.observability.jobs_table import RUNNING_STATES
from loralab.observability.metrics import process_registry
from loralab.settings import Settings

log = logging.getLogger("loralab.worker")
HEARTBEAT_SECONDS = 10.0


class WorkerJobsCollector(Collector):
    """Progress and throughput of the jobs whose lease this worker (``hostname``) holds.

    Throughput is samples per second between two scrapes: (step now - step then) x batch size.
    """

    def __init__(
        self, db: Database, hostname: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.prefix = f"{hostname}:"
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # job id -> (time, step)

    def describe(self) -> list[GaugeMetricFamily]:
        """The families, without querying (registering must not touch the database)."""
        return list(self.families([], self.clock()))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.db.session() as session:
            rows = session.execute(
                select(Job.id, Job.queue, Job.progress, Job.config).where(
                    Job.state.in_(RUNNING_STATES), Job.worker.startswith(self.prefix)
                )
            ).all()
        yield from self.families(rows, self.clock())

    def families(self, rows: Any, now: float) -> Iterator[GaugeMetricFamily]:
        """Rows ``(id, queue, progress, config)`` -> progress and throughput per queue."""
        progress: dict[str, list[float]] = {}
        speed = dict.fromkeys(QUEUES, 0.0)
        seen: dict[str, tuple[float, int]] = {}
        for job_id, queue, state, config in rows:
            if queue not in speed:
                continue
            step = int((state or {}).get("step") or 0)
            progress.setdefault(queue, []).append(float((state or {}).get("percent") or 0) / 100)
            before = self._last.get(job_id)
            if before is not None and now > before[0] and step >= before[1]:
                batch = int((config or {}).get("batch_size") or 0)
                speed[queue] += (step - before[1]) * batch / (now - before[0])
            seen[job_id] = (now, step)
        self._last = seen
        ratio = GaugeMetricFamily(
            "loralab_training_progress_ratio",
            "Progress (0-1) of the jobs this worker trains, mean per queue (0 when idle).",
            labels=["queue"],
        )
        rate = GaugeMetricFamily(
            "loralab_training_samples_per_second",
            "Training samples per second of the jobs this worker runs, since the last scrape.",
            labels=["queue"],
        )
        for queue in QUEUES:
            values = progress.get(queue, [])
            ratio.add_metric([queue], sum(values) / len(values) if values else 0.0)
            rate.add_metric([queue], speed[queue])
        yield ratio
        yield rate


def worker_registry(db: Database, hostname: str) -> tuple[CollectorRegistry, Gauge]:
    """The worker's registry and its heartbeat gauge."""
    registry = process_registry()
    registry.register(WorkerJobsCollector(db, hostname))
    heartbeat = Gauge(
        "loralab_worker_heartbeat_timestamp_seconds",
        "When this worker last reached its database (Unix time).",
        registry=registry,
    )
    return registry, heartbeat


def beat(db: Database, heartbeat: Gauge, stop: threading.Event) -> threading.Thread:
    """Set ``heartbeat`` to now after each successful ``SELECT 1``, every HEARTBEAT_SECONDS
    (the database unreachable: the gauge goes stale, and that is the signal)."""

    def reach() -> None:
        with db.session() as session:
            session.execute(text("SELECT 1"))
        heartbeat.set_to_current_time()

    return every(
        HEARTBEAT_SECONDS,
        reach,
        stop,
        name="loralab-metrics-heartbeat",
        failure="worker heartbeat: database unreachable",
        logger=log,
    )


def serve_worker_metrics(settings: Settings, hostname: str, stop: threading.Event) -> int | None:
    """Start the worker's ``/metrics`` endpoint; return its port (None when off or refused)."""
    port = settings.observability.worker_metrics_port
    if not port:
        return None
    db = Database(settings.db_url, settings.db.echo)
    registry, heartbeat = worker_registry(db, hostname)
    host = settings.observability.worker_metrics_host
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as err:  # another worker on this machine has the port: jobs still run
        log.error("worker metrics: cannot listen on %s:%d: %s", host, port, err)
        return None
    beat(db, heartbeat, stop)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return port


def install_worker_observability(app: Any, settings: Settings) -> None:
    """Metrics endpoint and log context (job id on every line of a task) for ``app``'s worker."""
    install_worker_metrics(app, settings)
    install_job_log_context(app)


def install_job_log_context(app: Any) -> None:
    """Each task's log lines carry its job id (the attempt is added once the job is claimed)."""
    from celery.signals import task_postrun, task_prerun

    from loralab.observability.logs import bind_job

    def on_start(sender: Any = None, args: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is app and args:
            bind_job(str(args[0]))

    def on_end(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is app:
            bind_job(None)

    task_prerun.connect(on_start, weak=False)
    task_postrun.connect(on_end, weak=False)


def install_worker_metrics(app: Any, settings: Settings) -> None:
    """When ``app``'s worker is ready (its main process), serve its metrics."""
    from celery.signals import worker_ready, worker_shutting_down

    stop = threading.Event()

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        serve_worker_metrics(settings, str(getattr(sender, "hostname", "") or "worker"), stop)

    def on_shutdown(**_: Any) -> None:
        stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutdown, weak=False)
