"""Fixtures for the job unit tests: a SQLite database, two users and an admin, a registered
dataset, a hand-written queue and audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs_fakes import FakeAudit, FakeQueue, Who, add_user, make_settings

from loralab.adapters.db import Base, Database
from loralab.jobs.service import JobService
from loralab.settings import Settings


@pytest.fixture()
def settings(tmp_path: Path, tiny_bert: Path) -> Settings:
    return make_settings(tmp_path, tiny_bert)


@pytest.fixture()
def db(settings: Settings) -> Database:
    settings.storage.results_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.db_url)
    Base.metadata.create_all(database.engine)
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
def audit() -> FakeAudit:
    return FakeAudit()


@pytest.fixture()
def jobs(db: Database, settings: Settings, queue: FakeQueue, audit: FakeAudit) -> JobService:
    return JobService(db, settings, queue, audit)
