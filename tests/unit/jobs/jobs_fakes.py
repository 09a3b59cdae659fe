"""Hand-written fakes for the job service: a queue that records, an audit log that records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, session: Any, **fields: Any) -> None:
        self.records.append(fields)

    def record_by(self, session: Any, actor: Any, ctx: Any, **fields: Any) -> None:
        self.record(
            session, username=actor.username, role=actor.role, client=ctx.client,
            request_id=ctx.request_id, **fields,
        )  # fmt: skip


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
    from tests.conftest import make_rows, write_csv

    from loralab.datasets.service import DataSpec, register_dataset

    data = write_csv(tmp_path / "reviews.csv", make_rows(40))
    spec = DataSpec(base_model=str(tiny_bert))
    register_dataset(settings, DATASET, data, user="alice", spec=spec)
    return f"{DATASET}@latest"
