"""Wiring: the one place that builds services from settings, for the API, the worker and the CLI.

Members are built on first use (``functools.cached_property``), so a CLI command that needs
only the registry opens no database and connects to no broker. A worker process asks
:class:`ProcessServices` instead: a forked pool child must not share its parent's database
connections, so each process gets its own :class:`Services`.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import TYPE_CHECKING

from loralab.settings import Settings

if TYPE_CHECKING:
    from loralab.audit.log import AuditLog
    from loralab.infra.db import Database
    from loralab.infra.queue import JobQueue
    from loralab.infra.ratelimit import RateLimiter
    from loralab.jobs.service import JobService
    from loralab.observability.metrics import Metrics
    from loralab.registry.service import RegistryService
    from loralab.serving.service import PredictionService
    from loralab.sweeps.service import SweepService
    from loralab.users.service import UserService

log = logging.getLogger(__name__)


class Services:
    """Every service of the platform for one settings object, each built when first used."""

    def __init__(self, settings: Settings, queue: JobQueue | None = None) -> None:
        self.settings = settings
        self._queue = queue

    @cached_property
    def db(self) -> Database:
        from loralab.infra.db import Database

        return Database(self.settings.db_url, self.settings.db.echo)

    @cached_property
    def audit(self) -> AuditLog:
        from loralab.audit.anchor import AuditAnchor
        from loralab.audit.log import AuditLog

        return AuditLog(self.db, anchor=AuditAnchor.from_settings(self.settings))

    @cached_property
    def queue(self) -> JobQueue:
        """How job ids reach workers: the given queue, else Celery through the broker."""
        return self._queue or celery_queue(self.settings)

    @cached_property
    def limiter(self) -> RateLimiter:
        """Request limits counted in Redis (shared by every API process)."""
        from loralab.infra.ratelimit import redis_limiter

        return redis_limiter(self.settings)

    @cached_property
    def users(self) -> UserService:
        from loralab.infra.ratelimit import limits_of
        from loralab.users.service import UserService

        limits = limits_of(self.settings.limits)
        return UserService(
            self.db, self.settings.auth, self.audit, limiter=self.limiter, limits=limits
        )

    @cached_property
    def jobs(self) -> JobService:
        from loralab.jobs.service import JobService
        from loralab.jobs.workers import RedisWorkers

        # worker heartbeats live beside the broker: a queue given here (tests) has none
        workers = None if self._queue else RedisWorkers.from_settings(self.settings)
        return JobService(self.db, self.settings, self.queue, self.audit, workers)

    @cached_property
    def sweeps(self) -> SweepService:
        """Sweeps whose trials run as jobs (studies beside the project's database)."""
        from loralab.sweeps.service import SweepService

        return SweepService(self.db, self.settings, self.jobs, self.audit)

    @cached_property
    def registry(self) -> RegistryService:
        from loralab.registry.service import RegistryService

        # the database backend shares this process's database (the files backend opens none)
        database = self.db if self.settings.registry_backend == "database" else None
        return RegistryService(self.settings, db=database)

    @cached_property
    def metrics(self) -> Metrics:
        from loralab.observability.metrics import Metrics

        return Metrics()

    @cached_property
    def predictions(self) -> PredictionService:
        from loralab.serving.service import PredictionService

        return PredictionService(self.settings, metrics=self.metrics)


def celery_queue(settings: Settings) -> JobQueue:
    """The platform path: job ids travel to Celery workers through Redis."""
    from loralab.infra.celery_app import create_celery_app
    from loralab.infra.queue import CeleryJobQueue

    return CeleryJobQueue(create_celery_app(settings))


def prepare_database(settings: Settings) -> None:
    """Bring the database to the newest migration; with the database registry backend, then
    move in the card folder's cards that it does not hold yet (``import_card_files``: the
    migration of the JSON cards, which Alembic cannot do without the settings)."""
    from loralab.infra.migrate import upgrade_database

    upgrade_database(settings.db_url)
    if settings.registry_backend != "database":
        return
    from loralab.infra.db import Database
    from loralab.registry.db_import import import_card_files
    from loralab.registry.db_store import DbCardStore

    db = Database(settings.db_url)
    try:
        found = import_card_files(DbCardStore(db, settings.registry_card_dir))
    finally:
        db.dispose()
    if found.imported or found.skipped:
        log.log(
            logging.WARNING if found.skipped or found.archived else logging.INFO,
            "model cards moved into the database: %d versions, %d history lines; "
            "Production cards taken in as Archived: %s; unreadable: %s",
            len(found.imported),
            found.history_lines,
            ", ".join(found.archived) or "none",
            "; ".join(found.skipped) or "none",
        )


def build_services(settings: Settings, queue: JobQueue | None = None) -> Services:
    """Every service of the platform for ``settings``; nothing is opened until it is used."""
    return Services(settings, queue)


class ProcessServices:
    """One :class:`Services` per process: built lazily, again after a fork."""

    def __init__(self, settings: Settings, queue: JobQueue | None = None) -> None:
        self.settings = settings
        self.queue = queue
        self._built: dict[int, Services] = {}

    def current(self) -> Services:
        """This process's services (a forked child builds its own on first use)."""
        pid = os.getpid()
        if pid not in self._built:
            self._built[pid] = build_services(self.settings, self.queue)
        return self._built[pid]
