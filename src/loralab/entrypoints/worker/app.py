"""The worker: the one task that runs a job, and what a worker does when it starts and stops.

The configured Celery app comes from :mod:`loralab.infra.celery_app`; the services from
:mod:`loralab.bootstrap`, once per process (a forked pool child opens its own connections).

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

from loralab.bootstrap import ProcessServices, Services, prepare_database
from loralab.infra.celery_app import create_celery_app
from loralab.infra.queue import QUEUES, RUN_JOB_TASK, CeleryJobQueue
from loralab.jobs.recover import start_recovery
from loralab.settings import Settings

log = logging.getLogger("loralab.worker")


def create_celery(settings: Settings) -> Celery:
    """The configured Celery app with task ``loralab.run_job`` and the worker's signals."""
    app = create_celery_app(settings)
    services = ProcessServices(settings, CeleryJobQueue(app))

    @app.task(name=RUN_JOB_TASK, bind=True)
    def run_job(self: Any, job_id: str) -> None:
        """Run one delivery of a job (thin: the service does the work)."""
        worker = f"{self.request.hostname or 'worker'}:{os.getpid()}"
        deliver(services.current(), str(job_id), worker)

    _connect_migration(app, settings)
    _connect_recovery(app, services)
    _connect_announce(app, settings)
    from loralab.observability.worker import install_worker_observability

    install_worker_observability(app, settings)
    return app


def deliver(found: Services, job_id: str, worker: str) -> None:
    """One delivery of a job: train it (a sweep's trial reports to its study and may be
    pruned), then let its sweep, if any, tell the result and queue the next trials."""
    found.jobs.execute(job_id, worker, watch=found.sweeps.watch)
    found.sweeps.job_ended(job_id)


def _connect_migration(app: Celery, settings: Settings) -> None:
    """When this app's worker starts (before it consumes), migrate its database to head.

    A failed migration stops the worker: it must not run jobs against a schema it does not
    know. (Celery logs and swallows a receiver's Exception, so the failure leaves as SystemExit.)
    """

    def on_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        try:
            prepare_database(settings)  # and the card folder into a registry database
        except Exception as err:
            log.critical("cannot migrate the database; the worker stops: %s", err)
            raise SystemExit(f"loralab worker: database migration failed: {err}") from err
        log.info("database at the newest migration")

    worker_init.connect(on_init, weak=False)


def _connect_recovery(app: Celery, services: ProcessServices) -> None:
    """When this app's worker is ready, sweep for lost jobs now and every ~30 s."""
    stop = threading.Event()

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        found = services.current()
        start_recovery(found.db, found.settings, found.queue, stop)
        log.info("stale-job recovery started")

    def on_shutdown(**_: Any) -> None:
        stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutdown, weak=False)


def _connect_announce(app: Celery, settings: Settings) -> None:
    """When this app's worker is ready, announce the job queues it consumes (a heartbeat key in
    Redis, renewed on a thread) so a submit can tell whether anyone serves a queue; when it
    shuts down, stop renewing (the key runs out within ``queue.worker_ttl_seconds``).

    Leftovers of uploads a crash interrupted are swept here too: a worker start is a start."""
    from loralab.jobs.workers import Heartbeat, RedisWorkers

    beats: list[Heartbeat] = []

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        consumed = getattr(getattr(app.amqp, "queues", None), "consume_from", None) or {}
        queues = [name for name in consumed if name in QUEUES]
        name = f"{getattr(sender, 'hostname', None) or 'worker'}:{os.getpid()}"
        beats.append(Heartbeat(RedisWorkers.from_settings(settings), name, queues).start())
        log.info("announcing queues %s as %s", ", ".join(queues) or "-", name)
        _sweep_uploads(settings)

    def on_shutdown(**_: Any) -> None:
        for beat in beats:
            beat.stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutdown, weak=False)


def _sweep_uploads(settings: Settings) -> None:
    from loralab.datasets.versioning import sweep_temporaries

    try:
        sweep_temporaries(settings.dataset_store_dir)
    except OSError as err:
        log.warning("cannot sweep upload leftovers: %s", err)
