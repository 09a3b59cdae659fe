"""Cards and stages in the database (SQLite here; PostgreSQL in
tests/integration/test_registry_db_pg.py): the StageStore contract on a fake MLflow, the card
export, MLflow following in the same transaction, repair, the stamp and the card import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from tests.helpers.registry_fakes import (
    MemoryRegistry,
    WordEmbedder,
    card_dict,
    fake_run,
    make_settings,
    register,
)
from tests.helpers.stage_store_contract import StageStoreContract, StageSubject, card_for

from loralab.bootstrap import prepare_database
from loralab.errors import NotFound
from loralab.infra.db import Database
from loralab.registry.cards import Stage, validate_card
from loralab.registry.db_import import import_card_files
from loralab.registry.db_store import DbCardStore, DbStageStore
from loralab.registry.mlflow_stages import MlflowStageStore
from loralab.registry.service import RegistryService
from loralab.registry.stages import StageChange
from loralab.registry.store import CardStore
from loralab.serving.resolve import ModelResolver
from loralab.settings import DbSettings, RegistrySettings, Settings, StorageSettings


@pytest.fixture()
def databases(sqlite_db_url: str) -> Iterator[list[Database]]:
    """Database objects on one SQLite file (each one a "machine"), disposed afterwards."""
    opened: list[Database] = []
    yield opened
    for db in opened:
        db.dispose()


def open_db(databases: list[Database], url: str) -> Database:
    databases.append(Database(url))
    return databases[-1]


def db_subject(
    databases: list[Database], url: str, registry: MemoryRegistry, root: Path
) -> StageSubject:
    cards = DbCardStore(open_db(databases, url), root)

    def new_version(name: str) -> str:
        version = registry.register(name, "contract-run")
        cards.write(validate_card(card_for(name, version)))
        return version

    def another() -> DbStageStore:
        return DbStageStore(registry, DbCardStore(open_db(databases, url), root))

    return StageSubject(DbStageStore(registry, cards), new_version, another=another)


class TestDbStageStoreOnSqlite(StageStoreContract):
    @pytest.fixture()
    def subject(
        self, databases: list[Database], sqlite_db_url: str, tmp_path: Path
    ) -> StageSubject:
        return db_subject(databases, sqlite_db_url, MemoryRegistry(), tmp_path / "cards")


@pytest.fixture()
def subject(databases: list[Database], sqlite_db_url: str, tmp_path: Path) -> StageSubject:
    return db_subject(databases, sqlite_db_url, MemoryRegistry(), tmp_path / "cards")


def parts(subject: StageSubject) -> tuple[DbStageStore, DbCardStore, MemoryRegistry]:
    store = subject.store
    assert isinstance(store, DbStageStore) and isinstance(store.registry, MemoryRegistry)
    return store, store.cards, store.registry


def promoted_twice(subject: StageSubject) -> tuple[str, str]:
    store = subject.store
    first, second = (subject.new_version("m") for _ in range(2))
    for version in (first, second):
        store.set("m", version, Stage.STAGING, "alice", "registered")
    store.set("m", first, Stage.PRODUCTION, "bob", "")
    store.set("m", second, Stage.PRODUCTION, "bob", "")
    return first, second


def test_mlflow_and_the_exported_files_follow_every_change(subject: StageSubject) -> None:
    store, cards, registry = parts(subject)
    first, second = promoted_twice(subject)
    assert registry.alias_target("m", "production") == second
    assert registry.alias_target("m", "staging") is None
    assert [v.stage for v in registry.versions("m")] == ["Archived", "Production"]
    exported = {p.name: json.loads(p.read_text())["stage"] for p in cards.root.glob("m@*.json")}
    assert exported == {f"m@{first}.json": "Archived", f"m@{second}.json": "Production"}
    # the files backend's reader finds the same cards and history in the export
    assert CardStore(cards.root).read("m", second) == cards.read("m", second)
    files = MlflowStageStore(registry, CardStore(cards.root))
    assert files.history("m") == store.history("m") and len(store.history("m")) == 5


def test_history_export_keeps_the_file_format(subject: StageSubject) -> None:
    store, cards, _ = parts(subject)
    version = subject.new_version("m")
    store.set("m", version, Stage.STAGING, "alice", "registered")
    line = (cards.root / "history" / "m.jsonl").read_text().strip()
    change = StageChange.from_dict(json.loads(line))
    assert change == store.history("m")[0]
    assert set(change.to_dict()) == {"model", "version", "from", "to", "by", "at", "reason"}


def test_a_card_write_keeps_the_stage_the_version_has(subject: StageSubject) -> None:
    store, cards, _ = parts(subject)
    version = subject.new_version("m")
    store.set("m", version, Stage.STAGING, "alice", "registered")
    store.set("m", version, Stage.PRODUCTION, "bob", "")
    edited = cards.read("m", version).model_copy(update={"description": "new words"})
    cards.write(edited.model_copy(update={"stage": Stage.ARCHIVED}))
    card = cards.read("m", version)
    assert (card.description, card.stage) == ("new words", Stage.PRODUCTION)
    assert store.production("m") == version
    assert json.loads(cards.path_of("m", version).read_text())["stage"] == "Production"


def test_the_database_refuses_a_second_production_row(subject: StageSubject) -> None:
    store, cards, _ = parts(subject)
    first, second = promoted_twice(subject)
    with pytest.raises(IntegrityError), cards.db.session() as session:
        session.execute(
            text("UPDATE model_cards SET stage = 'Production' WHERE name = 'm' AND version = :v"),
            {"v": int(first)},
        )
    assert store.stages("m") == {first: Stage.ARCHIVED, second: Stage.PRODUCTION}


class FailingAlias(MemoryRegistry):
    """MLflow that fails to move the production alias."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        if alias == "production":
            raise RuntimeError("mlflow is down")
        super().set_alias(name, alias, version)


def test_an_mlflow_failure_rolls_the_change_back(
    databases: list[Database], sqlite_db_url: str, tmp_path: Path
) -> None:
    subject = db_subject(databases, sqlite_db_url, FailingAlias(), tmp_path / "cards")
    store, cards, _ = parts(subject)
    [version] = [subject.new_version("m")]
    store.set("m", version, Stage.STAGING, "alice", "registered")
    before = (store.stages("m"), store.history("m"), cards.stamp())
    exported = cards.path_of("m", version).read_text()
    with pytest.raises(RuntimeError, match="mlflow is down"):
        store.set("m", version, Stage.PRODUCTION, "bob", "")
    assert (store.stages("m"), store.history("m"), cards.stamp()) == before
    assert cards.path_of("m", version).read_text() == exported


def test_a_failed_step_inside_a_held_lock_undoes_only_itself(
    databases: list[Database], sqlite_db_url: str, tmp_path: Path
) -> None:
    subject = db_subject(databases, sqlite_db_url, FailingAlias(), tmp_path / "cards")
    store, cards, _ = parts(subject)
    first, second = subject.new_version("m"), subject.new_version("m")
    with store.lock("m"):
        store.set("m", first, Stage.STAGING, "alice", "registered")
        with pytest.raises(RuntimeError):
            store.set("m", first, Stage.PRODUCTION, "bob", "")
        store.set("m", second, Stage.STAGING, "alice", "registered")
    assert store.stages("m") == {first: Stage.STAGING, second: Stage.STAGING}
    assert [c.to_stage for c in store.history("m")] == [Stage.STAGING, Stage.STAGING]


def test_a_version_mlflow_does_not_know_changes_nothing(subject: StageSubject) -> None:
    store, _, _ = parts(subject)
    with pytest.raises(NotFound, match="not in the MLflow model registry"):
        store.set("m", "7", Stage.STAGING, "alice", "")
    assert store.get("m", "7") is None and store.history("m") == []


def test_repair_makes_mlflow_and_the_files_agree_with_the_database(
    subject: StageSubject,
) -> None:
    store, cards, registry = parts(subject)
    first, second = promoted_twice(subject)
    registry.set_alias("m", "production", first)  # drift, as after a hand edit
    registry.set_stage_tag("m", first, "Production")
    cards.path_of("m", second).unlink()
    (cards.root / "history" / "m.jsonl").write_text("")
    unknown = registry.register("m", "orphan-run")  # a crash before its card was written
    stamp = cards.stamp()
    found = {(c.ref, c.what, c.old, c.new) for c in store.repair("m")}
    assert found == {
        (f"m@{first}", "registry tag", "Production", "Archived"),
        ("m@production", "alias target", first, second),
        (f"m@{second}", "card file", None, "Production"),
        ("m", "history file lines", "0", "5"),
        (f"m@{unknown}", "missing card", None, None),
    }
    assert registry.alias_target("m", "production") == second
    assert json.loads(cards.path_of("m", second).read_text())["stage"] == "Production"
    assert cards.stamp() != stamp
    assert [c.what for c in store.repair("m")] == ["missing card"]


def test_repair_reports_a_card_that_mlflow_does_not_know(subject: StageSubject) -> None:
    store, cards, _ = parts(subject)
    cards.write(validate_card(card_for("m", "9")))
    [change] = store.repair("m")
    assert (change.ref, change.what) == ("m@9", "missing in registry")


def test_the_stamp_is_cached_for_its_ttl_and_seen_by_another_store(
    databases: list[Database], sqlite_db_url: str, subject: StageSubject
) -> None:
    store, cards, _ = parts(subject)
    other = DbCardStore(open_db(databases, sqlite_db_url), cards.root, stamp_ttl=60.0)
    version = subject.new_version("m")
    seen = other.stamp()
    store.set("m", version, Stage.STAGING, "alice", "")
    assert other.stamp() == seen  # cached: no query within the ttl
    other.stamp_ttl = 0.0
    assert other.stamp() != seen and other.stamp() == store.stamp()


def test_a_miss_reads_the_database_before_it_answers_not_found(
    databases: list[Database], sqlite_db_url: str, tmp_path: Path
) -> None:
    """A model registered on another machine is served by the very next request, even while
    this machine's stamp is cached (a job's model answered 404 for up to a second)."""
    settings = make_settings(tmp_path).model_copy(update={"db": DbSettings(url=sqlite_db_url)})
    registry = MemoryRegistry()
    here, there = (
        RegistryService(settings, registry, WordEmbedder(), db=open_db(databases, sqlite_db_url))
        for _ in range(2)
    )
    assert isinstance(here.store, DbCardStore)
    here.store.stamp_ttl = 3600.0
    resolver = ModelResolver(settings, here)
    with pytest.raises(NotFound, match="no registered model"):
        resolver.resolve("sentiment@1")
    fake_run(settings.storage.results_dir, "20260101-000001-abc")
    register(there, tags={"loralab.run_id": "20260101-000001-abc"})
    assert resolver.resolve("sentiment@1").key == "sentiment@1"
    assert resolver.resolve("sentiment@latest").key == "sentiment@1"
    with pytest.raises(NotFound, match="no version"):
        resolver.resolve("sentiment@2")


def test_the_registry_service_uses_the_database_when_a_database_is_configured(
    databases: list[Database], sqlite_db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path).model_copy(update={"db": DbSettings(url=sqlite_db_url)})
    assert settings.registry_backend == "database"
    registry = MemoryRegistry()
    service = RegistryService(settings, registry, WordEmbedder())  # opens its own database
    assert isinstance(service.store, DbCardStore)
    assert isinstance(service.stage_store, DbStageStore)
    try:
        first, second = register(service), register(service, accuracy=0.95)
        service.transition(first.ref, "Production", "bob")
        result = service.transition(second.ref, "Production", "bob")
    finally:
        service.store.db.dispose()
    assert result.archived == [first.ref]
    assert registry.logged[-1][1] == str(settings.registry_card_dir / "sentiment@2.json")
    exported = json.loads((settings.registry_card_dir / "sentiment@1.json").read_text())
    assert exported["stage"] == "Archived"
    # another machine's service (given its database) reads the same truth
    db = open_db(databases, sqlite_db_url)
    again = RegistryService(settings, registry, WordEmbedder(), db=db)
    assert again.stage_store.production("sentiment") == second.version
    assert again.get_card(first.ref).stage is Stage.ARCHIVED
    assert [c.to_stage for c in again.history("sentiment")][-2:] == [
        Stage.ARCHIVED,
        Stage.PRODUCTION,
    ]
    assert again.reconcile() == []


def test_the_backend_setting() -> None:
    assert Settings().registry_backend == "files"
    assert Settings(db=DbSettings(url="postgresql://x/y")).registry_backend == "database"
    files = RegistrySettings(backend="files")
    assert Settings(db=DbSettings(url="postgresql://x/y"), registry=files).registry_backend == (
        "files"
    )
    assert Settings(registry=RegistrySettings(backend="database")).registry_backend == "database"


def test_the_files_backend_is_unchanged(tmp_path: Path) -> None:
    service = RegistryService(make_settings(tmp_path), MemoryRegistry(), WordEmbedder())
    assert type(service.store) is CardStore
    assert isinstance(service.stage_store, MlflowStageStore)


def files_registry(tmp_path: Path) -> tuple[RegistryService, MemoryRegistry]:
    registry = MemoryRegistry()
    return RegistryService(make_settings(tmp_path), registry, WordEmbedder()), registry


def moved(change: StageChange) -> StageChange:
    """The change as the database keeps it: its time to the microsecond."""
    return replace(change, at=round(change.at, 6))


def test_import_moves_the_card_folder_in_once(
    databases: list[Database], sqlite_db_url: str, tmp_path: Path
) -> None:
    files, registry = files_registry(tmp_path)
    first, second = register(files), register(files, accuracy=0.95)
    files.transition(first.ref, "Production", "bob")
    files.transition(second.ref, "Production", "bob", reason="better")
    root = files.settings.registry_card_dir
    history = files.stage_store.history("sentiment")
    store = DbCardStore(open_db(databases, sqlite_db_url), root)
    stages = DbStageStore(registry, store)

    found = import_card_files(store)
    assert (sorted(found.imported), found.history_lines) == ([first.ref, second.ref], 5)
    assert (found.archived, found.skipped) == ([], [])
    assert store.all_cards() == files.store.all_cards()
    assert [moved(c) for c in stages.history("sentiment")] == [moved(c) for c in history]
    assert stages.stages("sentiment") == files.stage_store.stages("sentiment")
    assert stages.repair("sentiment") == []  # MLflow and the files already agree
    again = import_card_files(store)
    assert (again.imported, again.history_lines) == ([], 0)
    assert len(stages.history("sentiment")) == 5


def test_import_takes_a_second_production_card_in_as_archived(
    databases: list[Database], sqlite_db_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "cards"
    for version in ("1", "2"):
        CardStore(root).write(validate_card(card_dict(version=version, stage="Production")))
    (root / "broken@1.json").write_text("{")
    store = DbCardStore(open_db(databases, sqlite_db_url), root)
    found = import_card_files(store)
    assert (found.imported, found.archived) == (["m@1", "m@2"], ["m@1"])
    assert [s.split(":")[0] for s in found.skipped] == ["broken@1.json"]
    assert DbStageStore(MemoryRegistry(), store).stages("m") == {
        "1": Stage.ARCHIVED,
        "2": Stage.PRODUCTION,
    }
    assert json.loads((root / "m@1.json").read_text())["stage"] == "Archived"


def test_prepare_database_imports_the_cards_only_for_the_database_backend(
    tmp_path: Path,
) -> None:
    files, _ = files_registry(tmp_path)
    card = register(files)
    storage = StorageSettings(results_dir=tmp_path / "results")
    registry = RegistrySettings(card_dir=files.settings.registry_card_dir)
    embedded = Settings(storage=storage, registry=registry)
    shared = embedded.model_copy(update={"db": DbSettings(url=embedded.db_url)})
    assert (embedded.registry_backend, shared.registry_backend) == ("files", "database")
    found = []
    for settings in (embedded, shared):
        prepare_database(settings)
        db = Database(settings.db_url)
        try:
            found.append(DbCardStore(db, files.settings.registry_card_dir).all_cards())
        finally:
            db.dispose()
    assert found == [[], [card]]
