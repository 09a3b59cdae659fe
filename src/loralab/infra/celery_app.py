"""The configured Celery app: a Redis broker carrying job ids, no task bodies.

No result backend: the jobs table is the truth about a job. Messages are acknowledged after the
task ends (``task_acks_late``) and put back when a worker process dies mid-task, so a crash never
loses a job; a duplicate delivery is harmless because execution is leased and idempotent.

Publishing (the API, the CLI) needs only this app; the worker entrypoint registers the task
``loralab.run_job`` and its signal handlers on it.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from loralab.infra.queue import QUEUES, RUN_JOB_TASK
from loralab.settings import Settings


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``: queues cpu, cuda and mps, JSON only, late acks."""
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
    return app
