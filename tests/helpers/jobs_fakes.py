"""Test helpers for the job service: a queue that records (the broker is transport only), users,
settings and a registered dataset. The audit log in these tests is the real one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loralab.audit.log import AuditEntry, AuditLog
from loralab.identity import Actor, RequestContext
from loralab.infra.db import Database, User
from loralab.settings import DbSettings, QueueSettings, Settings, StorageSettings

DATASET = "reviews"


Who = Actor


def Ctx() -> RequestContext:  # noqa: N802 - reads like the class it builds
    return RequestContext(client="127.0.0.1", request_id="req-1")


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.broken = False

    def enqueue(self, job_id: str, queue: str) -> None:
        if self.broken:
            raise ConnectionError("broker down")
        self.sent.append((job_id, queue))


def last_record(audit: AuditLog) -> AuditEntry:
    """The newest record of a real audit log."""
    entries, _ = audit.query(limit=1)
    return entries[0]


def make_settings(
    tmp_path: Path, tiny_bert: Path, db_url: str | None = None, **queue: Any
) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp_path / "results", models_dir=tiny_bert.parent),
        queue=QueueSettings(**queue),
        db=DbSettings(url=db_url),
    )


def add_user(db: Database, name: str, role: str) -> Who:
    with db.session() as session:
        user = User(username=name, password_hash="x", role=role)
        session.add(user)
        session.flush()
        return Who(user.id, name, role)


def register_dataset(settings: Settings, tiny_bert: Path, tmp_path: Path) -> str:
    from loralab.datasets.service import DataSpec, register_dataset
    from tests.conftest import make_rows, write_csv

    data = write_csv(tmp_path / "reviews.csv", make_rows(40))
    spec = DataSpec(base_model=str(tiny_bert))
    register_dataset(settings, DATASET, data, user="alice", spec=spec)
    return f"{DATASET}@latest"
