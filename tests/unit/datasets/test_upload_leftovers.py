"""Upload leftovers: what a crash (SIGKILL) leaves in the dataset store is swept at the next start;
what a live writer holds is kept; an operator's CLI version under a user's name keeps that owner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_rows, write_csv

from loralab.datasets.access import DatasetAccess
from loralab.datasets.service import DataSpec
from loralab.datasets.uploads import register_as_operator
from loralab.datasets.versioning import IN_USE, holding, sweep_temporaries
from loralab.identity import Actor
from loralab.infra.db import Database, DatasetRecord, User
from loralab.infra.migrate import upgrade_database
from loralab.settings import Settings, StorageSettings

HOLD = """
import sys, time
from pathlib import Path
from loralab.datasets.versioning import holding
folder = Path(sys.argv[1])
folder.mkdir()
with holding(folder):
    (folder / "upload.csv").write_text("half")
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_uploads_folder_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    store = tmp_path / "datasets"
    store.mkdir()
    killed, live = store / ".upload-killed", store / ".upload-live"
    writers = []
    for folder in (killed, live):
        writer = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE)
        assert writer.stdout is not None and writer.stdout.readline().strip() == b"held"
        writers.append(writer)
    stale_file = store / ".upload-abc123.tmp"  # add_version's temp, its writer gone
    stale_file.write_bytes(b"half")
    try:
        writers[0].kill()  # SIGKILL: no cleanup ran
        writers[0].wait()
        assert (killed / IN_USE).exists()
        removed = sweep_temporaries(store)
        assert sorted(p.name for p in removed) == [".upload-abc123.tmp", ".upload-killed"]
        assert live.is_dir() and not killed.exists() and not stale_file.exists()
    finally:
        writers[1].kill()
        writers[1].wait()
    assert sweep_temporaries(store) == [live]


def test_a_fresh_folder_without_its_lock_yet_is_kept(tmp_path: Path) -> None:
    young = tmp_path / ".upload-new"
    young.mkdir()
    assert sweep_temporaries(tmp_path) == []
    old = time.time() - 3600
    os.utime(young, (old, old))
    assert sweep_temporaries(tmp_path) == [young]


def test_holding_in_process_keeps_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / ".upload-mine"
    folder.mkdir()
    with holding(folder):
        assert sweep_temporaries(tmp_path) == []
    assert sweep_temporaries(tmp_path) == [folder]


def test_an_operators_cli_version_under_a_users_name_keeps_the_users_ownership(
    tmp_path: Path, tiny_bert: Path
) -> None:
    spec = DataSpec(base_model=str(tiny_bert))
    settings = Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        db={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},  # type: ignore[arg-type]
    )
    upgrade_database(settings.db_url)
    db = Database(settings.db_url)
    with db.session() as session:
        alice = User(username="alice", password_hash="x", role="user")
        bob = User(username="bob", password_hash="x", role="user")
        session.add_all([alice, bob])
        session.flush()
        a, b = Actor(alice.id, "alice", "user"), Actor(bob.id, "bob", "user")
        first = register_as_operator(
            settings, db, name="shared", file=write_csv(tmp_path / "s.csv", make_rows(30)),
            user="op", spec=spec,
        )  # fmt: skip
        assert first.created
    # alice's private name (as an upload records it), then the operator adds a version to it
    with db.session() as session:
        v1 = register_as_operator(
            settings, db, name="mine", file=write_csv(tmp_path / "m1.csv", make_rows(30)),
            user="op", spec=spec,
        ).version  # fmt: skip
        session.add(DatasetRecord(name="mine", version=v1.version, fingerprint=v1.fingerprint,
                                  owner_id=a.id))  # fmt: skip
    rows = make_rows(40)
    v2 = register_as_operator(
        settings, db, name="mine", file=write_csv(tmp_path / "m2.csv", rows), user="op",
        spec=spec,
    ).version  # fmt: skip
    assert v2.version == "v2"
    assert [v.version for v in DatasetAccess(settings, db, a).versions("mine")] == ["v1", "v2"]
    assert DatasetAccess(settings, db, b).versions("mine") == []  # not shared by the operator
    assert [v.version for v in DatasetAccess(settings, db, b).versions("shared")] == ["v1"]
    db.dispose()
