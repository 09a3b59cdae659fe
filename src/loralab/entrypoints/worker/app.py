"""The Celery app: a Redis broker carrying job ids, and the one task that runs a job.

No result backend: the jobs table is the truth about a job. Messages are acknowledged after the
task ends (``task_acks_late``) and put back when a worker process dies mid-task, so a crash never
loses a job; a duplicate delivery is harmless because execution is leased and idempotent.

A worker brings the database to the newest migration before it takes its first job (cheap when
it is there already), so a worker started before the API, or after an upgrade, never runs a job
against an old schema. Publishing (the API) builds the same app and migrates nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutting_down
from kombu import Queue

from loralab.audit.log import AuditLog
from loralab.infra.db import Database
from loralab.infra.queue import QUEUES, RUN_JOB_TASK, CeleryJobQueue
from loralab.jobs.recover import start_recovery
from loralab.jobs.service import JobService
from loralab.settings import Settings

log = logging.getLogger("loralab.worker")


def create_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``: queues cpu, cuda and mps, task ``loralab.run_job``."""
    app = Celery("loralab", broker=settings.queue.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.queue.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        task_routes={RUN_JOB_TASK: {"queue": "cpu"}},  # the default; enqueue names the queue
        worker_hijack_root_logger=False,
    )
    services = _ProcessServices(settings, app)

    @app.task(name=RUN_JOB_TASK, bind=True)
    def run_job(self: Any, job_id: str) -> None:
        """Run one delivery of a job (thin: the service does the work)."""
        worker = f"{self.request.hostname or 'worker'}:{os.getpid()}"
        services.jobs().execute(str(job_id), worker)

    _connect_migration(app, settings)
    _connect_recovery(app, settings)
    from loralab.observability.worker import install_worker_observability

    install_worker_observability(app, settings)
    return app


class _ProcessServices:
    """Services built lazily once per process (a forked pool child must not share the
    parent's database connections)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self._built: dict[int, JobService] = {}

    def jobs(self) -> JobService:
        pid = os.getpid()
        if pid not in self._built:
            db = Database(self.settings.db_url, self.settings.db.echo)
            self._built[pid] = JobService(db, self.settings, CeleryJobQueue(self.app), AuditLog(db))
        return self._built[pid]


def _connect_migration(app: Celery, settings: Settings) -> None:
    """When this app's worker starts (before it consumes), migrate its database to head.

    A failed migration stops the worker: it must not run jobs against a schema it does not
    know. (Celery logs and swallows a receiver's Exception, so the failure leaves as SystemExit.)
    """

    def on_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        from loralab.infra.migrate import upgrade_database

        try:
            upgrade_database(settings.db_url)
        except Exception as err:
            log.critical("cannot migrate the database; the worker stops: %s", err)
            raise SystemExit(f"loralab worker: database migration failed: {err}") from err
        log.info("database at the newest migration")

    worker_init.connect(on_init, weak=False)


def _connect_recovery(app: Celery, settings: Settings) -> None:
    """When this app's worker is ready, sweep for lost jobs now and every ~30 s."""
    stop = threading.Event()

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        db = Database(settings.db_url, settings.db.echo)
        start_recovery(db, settings, CeleryJobQueue(app), stop)
        log.info("stale-job recovery started")

    def on_shutdown(**_: Any) -> None:
        stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutdown, weak=False)
