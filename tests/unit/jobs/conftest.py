"""Fixtures for the job unit tests: a migrated database (each test runs on SQLite and on
PostgreSQL), two users and an admin, a registered dataset, a hand-written queue, the real audit
log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.jobs_fakes import FakeQueue, Who, add_user, make_settings

from loralab.audit.log import AuditLog
from loralab.infra.db import Database
from loralab.jobs.service import JobService
from loralab.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database private to the test; PostgreSQL skips only when no server answers."""
    fixture = "sqlite_db_url" if request.param == "sqlite" else "pg_private_db_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture()
def settings(tmp_path: Path, tiny_bert: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, tiny_bert, db_url=db_url)


@pytest.fixture()
def db(settings: Settings) -> Iterator[Database]:
    settings.storage.results_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.db_url)
    yield database
    database.dispose()


@pytest.fixture()
def people(db: Database) -> dict[str, Who]:
    return {
        name: add_user(db, name, role)
        for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin"))
    }


@pytest.fixture()
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture()
def audit(db: Database) -> AuditLog:
    return AuditLog(db)


@pytest.fixture()
def jobs(db: Database, settings: Settings, queue: FakeQueue, audit: AuditLog) -> JobService:
    return JobService(db, settings, queue, audit)
