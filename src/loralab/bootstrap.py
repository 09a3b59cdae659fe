"""Wiring: build every service once from settings, for the API, the worker and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from loralab.audit.log import AuditLog
from loralab.infra.db import Database
from loralab.infra.queue import CeleryJobQueue, JobQueue
from loralab.jobs.service import JobService
from loralab.observability.metrics import Metrics
from loralab.registry.service import RegistryService
from loralab.serving.service import PredictionService
from loralab.settings import Settings
from loralab.users.service import UserService


@dataclass
class Services:
    settings: Settings
    db: Database
    audit: AuditLog
    users: UserService
    jobs: JobService
    registry: RegistryService
    predictions: PredictionService
    metrics: Metrics


def celery_queue(settings: Settings) -> CeleryJobQueue:
    """The platform path: job ids travel to Celery workers through Redis."""
    from loralab.entrypoints.worker.app import create_celery

    return CeleryJobQueue(create_celery(settings))


def build_services(settings: Settings, queue: JobQueue | None = None) -> Services:
    """Every service of the platform for ``settings`` (no I/O beyond opening the database)."""
    db = Database(settings.db_url, settings.db.echo)
    audit = AuditLog(db)
    metrics = Metrics()
    registry = RegistryService(settings)
    return Services(
        settings=settings,
        db=db,
        audit=audit,
        users=UserService(db, settings.auth, audit),
        jobs=JobService(db, settings, queue or celery_queue(settings), audit),
        registry=registry,
        predictions=PredictionService(settings, metrics=metrics),
        metrics=metrics,
    )
