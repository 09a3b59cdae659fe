"""The platform API under TestClient: a migrated SQLite database, the real user, audit and job
services, a shared (CLI-registered) dataset, users alice and bob and admin root. The queue is a
hand-written fake: these tests do not run jobs (the worker tests do, through Celery and Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loralab.bootstrap import Services, build_services
from loralab.datasets import service as datasets
from loralab.entrypoints.api.app import create_app
from loralab.settings import (
    AuthSettings,
    DbSettings,
    LimitSettings,
    RegistrySettings,
    Settings,
    StorageSettings,
)

SECRET = "a-test-signing-secret-that-is-long-enough-0123456789"
PASSWORD = "correct horse battery"


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def enqueue(self, job_id: str, queue: str) -> None:
        self.sent.append((job_id, queue))


Platform = tuple[TestClient, Services, FakeQueue]


def settings_for(tmp: Path, models: Path) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp / "results", models_dir=models),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        db=DbSettings(url=f"sqlite:///{tmp / 'platform.db'}"),
        auth=AuthSettings(secret_key=SECRET, login_max_failures=3),  # type: ignore[arg-type]
        limits=LimitSettings(prefix=f"loralab:test:{uuid.uuid4().hex}:"),  # counts of its own
    )


@pytest.fixture()
def platform(tmp_path: Path, tiny_bert: Path) -> Iterator[Platform]:
    from tests.conftest import make_rows, write_csv

    settings = settings_for(tmp_path, tiny_bert.parent)
    shared = write_csv(tmp_path / "reviews.csv", make_rows(40))
    datasets.register_dataset(settings, "reviews", shared, user="ops")  # from the CLI: shared
    queue = FakeQueue()
    found = build_services(settings, queue=queue)
    app = create_app(settings, found)
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        found.users.create_user(name, PASSWORD, role)
    with TestClient(app) as client:
        yield client, found, queue


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
