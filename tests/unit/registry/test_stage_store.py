"""The StageStore contract, run against the in-memory fake and MlflowStageStore on a fake MLflow
(the real MLflow store runs it in tests/integration/test_registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.registry_fakes import MemoryRegistry, MemoryStageStore
from tests.helpers.stage_store_contract import StageStoreContract, StageSubject, card_for

from loralab.registry.cards import Stage, validate_card
from loralab.registry.mlflow_stages import MlflowStageStore
from loralab.registry.stages import ReentrantLocks, StageChange
from loralab.registry.store import CardStore


class TestMemoryStageStore(StageStoreContract):
    @pytest.fixture()
    def subject(self) -> StageSubject:
        counters: dict[str, int] = {}

        def new_version(name: str) -> str:
            counters[name] = counters.get(name, 0) + 1
            return str(counters[name])

        return StageSubject(MemoryStageStore(), new_version)


def mlflow_subject(registry: MemoryRegistry, root: Path) -> StageSubject:
    cards = CardStore(root)

    def new_version(name: str) -> str:
        version = registry.register(name, "contract-run")
        cards.write(validate_card(card_for(name, version)))
        return version

    return StageSubject(
        MlflowStageStore(registry, cards),
        new_version,
        another=lambda: MlflowStageStore(registry, CardStore(root)),
    )


class TestMlflowStageStoreOnFakeMlflow(StageStoreContract):
    @pytest.fixture()
    def subject(self, tmp_path: Path) -> StageSubject:
        return mlflow_subject(MemoryRegistry(), tmp_path / "cards")

    def test_cards_and_aliases_mirror_every_change(self, subject: StageSubject) -> None:
        store = subject.store
        assert isinstance(store, MlflowStageStore)
        registry = store.registry
        first, second = (subject.new_version("m") for _ in range(2))
        for version in (first, second):
            store.set("m", version, Stage.STAGING, "alice", "registered")
        store.set("m", first, Stage.PRODUCTION, "bob", "")
        store.set("m", second, Stage.PRODUCTION, "bob", "")
        cards = {c.version: c.stage for c in store.cards.all_cards()}
        assert cards == {first: Stage.ARCHIVED, second: Stage.PRODUCTION}
        assert registry.alias_target("m", "production") == second
        assert registry.alias_target("m", "staging") is None
        assert [v.stage for v in registry.versions("m")] == ["Archived", "Production"]

    def test_history_file_keeps_its_format(self, subject: StageSubject) -> None:
        store = subject.store
        assert isinstance(store, MlflowStageStore)
        version = subject.new_version("m")
        store.set("m", version, Stage.STAGING, "alice", "registered")
        line = (store.cards.root / "history" / "m.jsonl").read_text().strip()
        change = StageChange.from_dict(json.loads(line))
        assert change == store.history("m")[0]
        assert set(change.to_dict()) == {"model", "version", "from", "to", "by", "at", "reason"}

    def test_repair_puts_the_staging_alias_on_the_newest_staging_version(
        self, subject: StageSubject
    ) -> None:
        store = subject.store
        assert isinstance(store, MlflowStageStore)
        versions = [subject.new_version("m") for _ in range(2)]
        for version in versions:
            store.set("m", version, Stage.STAGING, "alice", "registered")
        store.registry.set_alias("m", "staging", versions[0])  # drift, as after a crash
        [change] = store.repair("m")
        assert (change.ref, change.what, change.old, change.new) == (
            "m@staging",
            "alias target",
            versions[0],
            versions[1],
        )
        assert store.registry.alias_target("m", "staging") == versions[1]


def test_reentrant_locks_take_the_real_lock_once_per_thread() -> None:
    taken: list[str] = []

    class Probe:
        def __enter__(self) -> None:
            taken.append("enter")

        def __exit__(self, *exc: object) -> None:
            taken.append("exit")

    locks = ReentrantLocks()
    with locks.hold("m", Probe), locks.hold("m", Probe), locks.hold("other", Probe):
        assert taken == ["enter", "enter"]  # "m" once, "other" once
    assert taken == ["enter", "enter", "exit", "exit"]
    with locks.hold("m", Probe):
        pass
    assert taken[-2:] == ["enter", "exit"]
