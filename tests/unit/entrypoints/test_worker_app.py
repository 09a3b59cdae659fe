"""The Celery app factory: a worker migrates its database before it takes jobs; publishing
(the API builds the same app) migrates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery.signals import worker_init

from loralab.entrypoints.worker.app import create_celery
from loralab.infra.migrate import current_revision, head_revision
from loralab.settings import DbSettings, Settings, StorageSettings


class WorkerOf:
    """What the worker_init signal sends: the starting worker, which knows its app."""

    def __init__(self, app: Any) -> None:
        self.app = app


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings(storage=StorageSettings(results_dir=tmp_path / "r"), db=DbSettings(url=url))


def test_worker_start_migrates_a_fresh_database_building_the_app_does_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'loralab.db'}"
    app = create_celery(settings_for(url, tmp_path))
    assert current_revision(url) is None  # building the app (as the API does) touched nothing
    other = create_celery(settings_for(f"sqlite:///{tmp_path / 'other.db'}", tmp_path))
    worker_init.send(sender=WorkerOf(other))
    assert current_revision(url) is None  # another app's worker started: not ours
    worker_init.send(sender=WorkerOf(app))
    assert current_revision(url) == head_revision()
    worker_init.send(sender=WorkerOf(app))  # at head already: a no-op
    assert current_revision(url) == head_revision()


def test_a_failed_migration_stops_the_worker(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    app = create_celery(settings_for(f"sqlite:///{blocker / 'loralab.db'}", tmp_path))
    with pytest.raises(SystemExit, match="database migration failed"):
        worker_init.send(sender=WorkerOf(app))
