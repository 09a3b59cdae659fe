"""Which dataset versions a user may train on: their own uploads, versions registered from the
CLI (no owner), and any for an admin. Anything else is refused exactly like a missing dataset,
and the job is pinned to the version that was checked (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.jobs_fakes import DATASET, Ctx, FakeQueue, Who, register_dataset

from loralab.datasets.service import DataSpec
from loralab.datasets.service import register_dataset as register_file
from loralab.errors import InvalidInput
from loralab.infra.db import Database, DatasetRecord, Job
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.jobs.views import JobView
from loralab.settings import Settings

MISSING = "nothere@v1"


@pytest.fixture()
def shared(settings: Settings, tiny_bert: Path, tmp_path: Path) -> str:
    """reviews@v1, registered from the CLI: no owner, everyone may use it."""
    register_dataset(settings, tiny_bert, tmp_path)
    return f"{DATASET}@v1"


def upload(
    settings: Settings,
    db: Database,
    tiny_bert: Path,
    tmp_path: Path,
    who: Who,
    name: str,
    seed: int,
) -> str:
    """A version of ``name`` as an API upload by ``who`` leaves it: registered and owned."""
    from tests.conftest import make_rows, write_csv

    data = write_csv(tmp_path / f"{name}-{seed}.csv", make_rows(40, seed=seed))
    spec = DataSpec(base_model=str(tiny_bert))
    version = register_file(settings, name, data, user=who.username, spec=spec).version
    with db.session() as session:
        session.add(
            DatasetRecord(
                name=version.name,
                version=version.version,
                fingerprint=version.fingerprint,
                owner_id=who.id,
            )
        )
    return version.ref


def train(jobs: JobService, who: Who, train_file: str, **fields: str) -> JobView:
    request = TrainRequest(train_file=train_file, base_model="tiny-bert", **fields)  # type: ignore[arg-type]
    return jobs.submit(who, request, Ctx())


def pinned(db: Database, job_id: object) -> tuple[str, str | None]:
    with db.session() as session:
        row = session.get(Job, str(job_id))
        assert row is not None
        return row.config["train_file"], row.config.get("validation_file")


def refusal(jobs: JobService, who: Who, train_file: str, **fields: str) -> str:
    with pytest.raises(InvalidInput) as err:
        train(jobs, who, train_file, **fields)
    return str(err.value)


def test_someone_elses_upload_looks_exactly_like_a_missing_dataset(
    jobs: JobService,
    people: dict[str, Who],
    settings: Settings,
    db: Database,
    queue: FakeQueue,
    tiny_bert: Path,
    tmp_path: Path,
) -> None:
    mine = upload(settings, db, tiny_bert, tmp_path, people["alice"], "mine", seed=1)
    bob = people["bob"]
    for theirs in (mine, "mine@latest", f"mine@{_fingerprint(settings, mine)[:8]}"):
        missing = theirs.replace("mine", "nothere")
        got = refusal(jobs, bob, theirs)
        assert got.startswith("train_file: no dataset")
        assert got.replace(theirs, "REF") == refusal(jobs, bob, missing).replace(missing, "REF")
    assert queue.sent == []
    with db.session() as session:
        assert session.query(Job).count() == 0  # nothing half-written


def test_the_validation_file_is_checked_too(
    jobs: JobService,
    people: dict[str, Who],
    settings: Settings,
    db: Database,
    tiny_bert: Path,
    tmp_path: Path,
    shared: str,
) -> None:
    mine = upload(settings, db, tiny_bert, tmp_path, people["alice"], "mine", seed=1)
    got = refusal(jobs, people["bob"], shared, validation_file=mine)
    missing = refusal(jobs, people["bob"], shared, validation_file=MISSING)
    assert got.startswith("validation_file: no dataset")
    assert got.replace(mine, "REF") == missing.replace(MISSING, "REF")
    view = train(jobs, people["alice"], shared, validation_file=mine)
    assert pinned(db, view.task_id) == (shared, mine)


def test_owner_admin_and_shared_versions_are_allowed(
    jobs: JobService,
    people: dict[str, Who],
    settings: Settings,
    db: Database,
    tiny_bert: Path,
    tmp_path: Path,
    shared: str,
) -> None:
    mine = upload(settings, db, tiny_bert, tmp_path, people["alice"], "mine", seed=1)
    assert train(jobs, people["alice"], mine).state == "queued"
    assert train(jobs, people["root"], mine).state == "queued"  # an admin: any version
    assert train(jobs, people["bob"], shared).state == "queued"  # registered from the CLI


def test_latest_is_the_newest_version_the_user_may_see_and_the_job_is_pinned_to_it(
    jobs: JobService,
    people: dict[str, Who],
    settings: Settings,
    db: Database,
    tiny_bert: Path,
    tmp_path: Path,
    shared: str,
) -> None:
    newer = upload(settings, db, tiny_bert, tmp_path, people["alice"], DATASET, seed=7)
    assert newer == f"{DATASET}@v2"
    latest = f"{DATASET}@latest"
    for who, expected in (("bob", shared), ("alice", newer), ("root", newer)):
        view = train(jobs, people[who], latest)
        assert pinned(db, view.task_id) == (expected, None), who
    message = refusal(jobs, people["bob"], f"{DATASET}@v9")
    assert "versions you may use: v1)" in message  # alice's v2 is not even named


def _fingerprint(settings: Settings, ref: str) -> str:
    from loralab.datasets.service import show_version

    return show_version(settings, ref).fingerprint
