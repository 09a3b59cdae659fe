"""Cards and stages in a real PostgreSQL database, with a real MLflow registry (a SQLite MLflow
store shared by the processes): the StageStore contract, the import of a card folder, 50
promotions racing from several OS processes, and a promotion seen by another "machine"."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.helpers.stage_store_contract import StageStoreContract, StageSubject, card_for

from loralab.infra.db import Database, ModelCardRecord
from loralab.infra.migrate import upgrade_database
from loralab.infra.model_registry import MlflowModelRegistry
from loralab.registry.cards import Stage, validate_card
from loralab.registry.db_import import import_card_files
from loralab.registry.db_store import DbCardStore, DbStageStore
from loralab.registry.mlflow_stages import MlflowStageStore
from loralab.registry.service import RegistryService
from loralab.registry.store import CardStore
from loralab.settings import (
    DbSettings,
    MlflowSettings,
    RegistrySettings,
    Settings,
    StorageSettings,
)

pytestmark = [pytest.mark.integration]

PROCESSES, THREADS = 5, 10  # 50 promotions


def mlflow_store(folder: Path) -> tuple[str, str]:
    """A fresh MLflow SQLite store with one run to register versions from: (uri, run id)."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowModelRegistry(uri).client
    experiment = client.create_experiment("db", artifact_location=(folder / "art").as_uri())
    return uri, client.create_run(experiment).info.run_id


@pytest.fixture()
def databases() -> Iterator[list[Database]]:
    opened: list[Database] = []
    yield opened
    for db in opened:
        db.dispose()


def open_db(databases: list[Database], url: str) -> Database:
    databases.append(Database(url))
    return databases[-1]


class TestDbStageStoreOnPostgres(StageStoreContract):
    @pytest.fixture()
    def subject(
        self, databases: list[Database], pg_private_db_url: str, tmp_path: Path
    ) -> StageSubject:
        uri, run_id = mlflow_store(tmp_path / "mlflow")
        registry, root = MlflowModelRegistry(uri), tmp_path / "cards"
        cards = DbCardStore(open_db(databases, pg_private_db_url), root)

        def new_version(name: str) -> str:
            version = registry.register(name, run_id)
            cards.write(validate_card(card_for(name, version)))
            return version

        def another() -> DbStageStore:
            return DbStageStore(registry, DbCardStore(open_db(databases, pg_private_db_url), root))

        return StageSubject(DbStageStore(registry, cards), new_version, another=another)


def test_the_card_folder_of_the_files_backend_moves_in(
    databases: list[Database], pg_private_db_url: str, tmp_path: Path
) -> None:
    uri, run_id = mlflow_store(tmp_path / "mlflow")
    registry, root = MlflowModelRegistry(uri), tmp_path / "cards"
    files = MlflowStageStore(registry, CardStore(root))
    versions = [registry.register("m", run_id) for _ in range(3)]
    for version in versions:
        files.cards.write(validate_card(card_for("m", version)))
        files.set("m", version, Stage.STAGING, "alice", "registered")
    files.set("m", versions[0], Stage.PRODUCTION, "bob", "")
    files.set("m", versions[1], Stage.PRODUCTION, "bob", "better")

    cards = DbCardStore(open_db(databases, pg_private_db_url), root)
    store = DbStageStore(registry, cards)
    found = import_card_files(cards)
    assert (found.imported, found.history_lines) == ([f"m@{v}" for v in versions], 6)
    assert (found.archived, found.skipped) == ([], [])
    assert cards.all_cards() == files.cards.all_cards()
    assert store.stages("m") == files.stages("m")
    assert [(c.version, c.to_stage, c.by, c.reason) for c in store.history("m")] == [
        (c.version, c.to_stage, c.by, c.reason) for c in files.history("m")
    ]
    assert store.repair("m") == []  # MLflow and the folder already agree with it
    assert import_card_files(cards).imported == []
    # from here on the database decides, and MLflow and the folder follow
    store.set("m", versions[2], Stage.PRODUCTION, "carol", "")
    assert registry.alias_target("m", "production") == versions[2]
    assert files.stages("m") == store.stages("m")
    assert CardStore(root).read("m", versions[1]).stage is Stage.ARCHIVED


def promote_in_process(
    db_url: str,
    mlflow_uri: str,
    root: str,
    versions: list[str],
    start: Any,
    results: Any,
) -> None:
    """One OS process ("a machine"): its own database engine and MLflow client, a thread per
    version, all promoting at once after every process is ready."""
    db = Database(db_url)
    store_cards = DbCardStore(db, Path(root))
    registry = MlflowModelRegistry(mlflow_uri)
    registry.versions("race")  # connect before the start, not during the race
    errors: list[str] = []

    def promote(version: str) -> None:
        store = DbStageStore(registry, store_cards)
        try:
            store.set("race", version, Stage.PRODUCTION, f"user{version}", "race")
        except BaseException:  # noqa: BLE001 - sent back to the test
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    start.wait(120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    db.dispose()
    results.put(errors)


def test_50_promotions_racing_from_several_processes_leave_one_production(
    pg_private_db_url: str, tmp_path: Path
) -> None:
    uri, run_id = mlflow_store(tmp_path / "mlflow")
    registry, root = MlflowModelRegistry(uri), tmp_path / "cards"
    db = Database(pg_private_db_url)
    cards = DbCardStore(db, root)
    store = DbStageStore(registry, cards)
    versions = [registry.register("race", run_id) for _ in range(PROCESSES * THREADS)]
    for version in versions:
        cards.write(validate_card(card_for("race", version)))
        store.set("race", version, Stage.STAGING, "alice", "registered")

    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(PROCESSES + 1), spawn.Queue()
    shares = [versions[i::PROCESSES] for i in range(PROCESSES)]
    processes = [
        spawn.Process(
            target=promote_in_process,
            args=(pg_private_db_url, uri, str(root), share, start, results),
        )
        for share in shares
    ]
    for process in processes:
        process.start()
    start.wait(120)
    began = time.monotonic()
    errors = [error for _ in processes for error in results.get(timeout=300)]
    took = time.monotonic() - began
    for process in processes:
        process.join(60)
    assert errors == [] and [p.exitcode for p in processes] == [0] * PROCESSES

    try:
        with db.session() as session:
            winners = session.scalars(
                select(ModelCardRecord.version).where(ModelCardRecord.stage == "Production")
            ).all()
            rows = session.scalar(select(func.count()).select_from(ModelCardRecord))
        assert len(winners) == 1 and rows == len(versions)
        winner = str(winners[0])
        stages = store.stages("race")
        assert stages == {v: Stage.ARCHIVED for v in versions if v != winner} | {
            winner: Stage.PRODUCTION
        }
        # every promotion is in the history, each archiving the one before it
        history = store.history("race")
        promoted = [c.version for c in history if c.to_stage is Stage.PRODUCTION]
        assert sorted(promoted, key=int) == versions and promoted[-1] == winner
        archived = [(c.version, c.reason) for c in history if c.to_stage is Stage.ARCHIVED]
        assert archived == [(a, f"replaced by race@{b}") for a, b in zip(promoted, promoted[1:])]
        # MLflow, the exported cards and the exported history agree with the database
        assert registry.alias_target("race", "production") == winner
        assert registry.alias_target("race", "staging") is None
        assert {v.version: v.stage for v in registry.versions("race")} == {
            v: s.value for v, s in stages.items()
        }
        exported = {
            path.name.split("@")[1].removesuffix(".json"): json.loads(path.read_text())["stage"]
            for path in root.glob("race@*.json")
        }
        assert exported == {v: s.value for v, s in stages.items()}
        lines = (root / "history" / "race.jsonl").read_text().splitlines()
        assert [json.loads(line)["version"] for line in lines] == [c.version for c in history]
        assert store.repair("race") == []
    finally:
        db.dispose()
    print(f"50 promotions from {PROCESSES} processes: {took:.1f} s")  # noqa: T201


def test_another_machine_sees_a_promotion_within_2_seconds(
    pg_private_db_url: str, tmp_path: Path
) -> None:
    """Two services built from settings alone (as a prediction service builds its own): the
    second one's stamp moves, and its stages show the new Production, within 2 s."""
    uri, run_id = mlflow_store(tmp_path / "mlflow")
    settings = Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        registry=RegistrySettings(card_dir=tmp_path / "cards"),
        db=DbSettings(url=pg_private_db_url),
        mlflow=MlflowSettings(tracking_uri=uri),
    )
    upgrade_database(settings.db_url)
    here, there = RegistryService(settings), RegistryService(settings)
    try:
        version = MlflowModelRegistry(uri).register("seen", run_id)  # a bare version
        here.store.write(validate_card(card_for("seen", version)))
        here.stage_store.set("seen", version, Stage.STAGING, "alice", "registered")
        stamp = (there.store.stamp(), there.stage_store.stamp())
        assert there.stage_store.production("seen") is None
        here.transition(f"seen@{version}", "Production", "bob")
        promoted = time.monotonic()
        while (there.store.stamp(), there.stage_store.stamp()) == stamp:
            assert time.monotonic() - promoted < 2.0, "the promotion was not seen within 2 s"
            time.sleep(0.01)
        assert there.stage_store.production("seen") == version
        assert there.get_card(f"seen@{version}").stage is Stage.PRODUCTION
    finally:
        for service in (here, there):
            assert isinstance(service.store, DbCardStore)
            service.store.db.dispose()
