"""The StageStore contract: what every stage store must do, as tests any implementation can run.

Use: subclass :class:`StageStoreContract` in a test module (its name starting with ``Test``) and
give it a ``subject`` fixture returning a :class:`StageSubject`. Run today against the in-memory
fake (unit tests), ``MlflowStageStore`` on a fake MLflow (unit tests) and ``MlflowStageStore`` on
a real MLflow SQLite store (integration tests); a database store joins with one more subclass.
This module imports nothing from the other test helpers, so any test folder can use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loralab.registry.cards import Stage
from loralab.registry.stages import StageStore, StageUpdate

MODEL = "contract-model"


@dataclass
class StageSubject:
    store: StageStore
    new_version: Callable[[str], str]  # a new version of the named model (no stage yet)
    another: Callable[[], StageStore] | None = None  # a second store on the same storage
    model: str = MODEL  # the model name the tests use (unique where storage is shared)


def card_for(name: str, version: str) -> dict[str, Any]:
    """A minimal valid model card (for stores that mirror stages into cards)."""
    vector = [0.0] * 384
    vector[0] = 1.0
    return {
        "name": name,
        "version": version,
        "run_id": "contract-run",
        "base_model": "minilm-l6",
        "language": "English",
        "task": "sentiment",
        "labels": ["a", "b"],
        "dataset": {"name": "ds", "version": "v1", "fingerprint": "f"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
        "created_by": "alice",
        "created_at": 1.0,
        "embedding": vector,
    }


def staged(subject: StageSubject, count: int, name: str | None = None) -> list[str]:
    """``count`` new versions of ``name`` (default: the subject's model), each in Staging."""
    name = name or subject.model
    versions = [subject.new_version(name) for _ in range(count)]
    for version in versions:
        subject.store.set(name, version, Stage.STAGING, "alice", "registered")
    return versions


def in_thread(action: Callable[[], None], timeout: float = 30.0) -> None:
    """Run ``action`` in a thread; fail (instead of hanging) if it does not end in time."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the store deadlocked"
    assert errors == []


class StageStoreContract:
    """Behaviour every :class:`StageStore` must have (see its docstring)."""

    def test_a_new_version_has_no_stage_and_no_history(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        version = subject.new_version(model)
        assert store.get(model, version) is None
        assert store.stages(model) == {}
        assert (store.production(model), store.staging(model)) == (None, None)
        assert store.history(model) == [] and store.history("never-registered") == []

    def test_set_records_who_when_and_why(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        version = subject.new_version(model)
        before = time.time()
        assert store.set(model, version, Stage.STAGING, "alice", "registered") == StageUpdate(
            None, []
        )
        assert store.get(model, version) is Stage.STAGING
        assert store.stages(model) == {version: Stage.STAGING}
        [change] = store.history(model)
        assert (change.model, change.version, change.from_stage, change.to_stage) == (
            model,
            version,
            None,
            Stage.STAGING,
        )
        assert (change.by, change.reason, change.ref) == (
            "alice",
            "registered",
            f"{model}@{version}",
        )
        assert before <= change.at <= time.time()

    def test_promotion_archives_the_previous_production(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        first, second = staged(subject, 2)
        assert store.set(model, first, Stage.PRODUCTION, "bob", "first") == (Stage.STAGING, [])
        assert store.production(model) == first
        old, archived = store.set(model, second, Stage.PRODUCTION, "bob", "better")
        assert (old, archived) == (Stage.STAGING, [f"{model}@{first}"])
        assert store.production(model) == second
        assert store.stages(model) == {first: Stage.ARCHIVED, second: Stage.PRODUCTION}
        moves = [(c.version, c.from_stage, c.to_stage, c.reason) for c in store.history(model)]
        assert moves[-2:] == [
            (first, Stage.PRODUCTION, Stage.ARCHIVED, f"replaced by {model}@{second}"),
            (second, Stage.STAGING, Stage.PRODUCTION, "better"),
        ]

    def test_leaving_production_leaves_none(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        [version] = staged(subject, 1)
        store.set(model, version, Stage.PRODUCTION, "bob", "")
        assert store.set(model, version, Stage.ARCHIVED, "bob", "retire") == (Stage.PRODUCTION, [])
        assert store.production(model) is None
        assert store.get(model, version) is Stage.ARCHIVED

    def test_staging_is_the_newest_version_in_staging(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        first, second, third = staged(subject, 3)
        assert store.staging(model) == third
        store.set(model, third, Stage.ARCHIVED, "bob", "")
        assert store.staging(model) == second
        store.set(model, second, Stage.PRODUCTION, "bob", "")
        assert store.staging(model) == first
        store.set(model, first, Stage.ARCHIVED, "bob", "")
        assert store.staging(model) is None
        store.set(model, third, Stage.STAGING, "bob", "again")
        assert store.staging(model) == third

    def test_models_are_independent(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        one, two = f"{model}-a", f"{model}-b"
        [a] = staged(subject, 1, one)
        [b] = staged(subject, 1, two)
        store.set(one, a, Stage.PRODUCTION, "bob", "")
        store.set(two, b, Stage.PRODUCTION, "bob", "")
        assert (store.production(one), store.production(two)) == (a, b)
        assert store.production(model) is None
        assert [c.model for c in store.history(one)] == [one, one]

    def test_stamp_changes_with_every_change(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        version = subject.new_version(model)
        seen = [store.stamp()]
        for stage in (Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED):
            store.set(model, version, stage, "bob", "")
            seen.append(store.stamp())
        assert len(set(seen)) == len(seen), seen

    def test_lock_is_reentrant(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        version = subject.new_version(model)

        def nested() -> None:
            with store.lock(model), store.lock(model):
                store.set(model, version, Stage.STAGING, "bob", "")

        in_thread(nested)
        assert store.get(model, version) is Stage.STAGING

    def test_lock_holds_off_other_threads_and_stores(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        [version] = staged(subject, 1)
        for other in (store, subject.another() if subject.another else store):
            order: list[str] = []
            held = threading.Event()

            def hold() -> None:
                with store.lock(model):
                    held.set()
                    time.sleep(0.3)
                    order.append("released")

            def archive(waiting: StageStore = other) -> None:
                waiting.set(model, version, Stage.ARCHIVED, "x", "")
                order.append("set")

            holder = threading.Thread(target=hold, daemon=True)
            holder.start()
            assert held.wait(10)
            in_thread(archive)
            holder.join(10)
            assert order == ["released", "set"]
            store.set(model, version, Stage.STAGING, "x", "")

    def test_racing_promotions_leave_one_production(self, subject: StageSubject) -> None:
        model = subject.model
        versions = staged(subject, 6)
        stores = [subject.another() if subject.another else subject.store for _ in versions]
        barrier = threading.Barrier(len(versions))
        errors: list[BaseException] = []

        def promote(store: StageStore, version: str) -> None:
            barrier.wait()
            try:
                store.set(model, version, Stage.PRODUCTION, f"user{version}", "race")
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=promote, args=(s, v)) for s, v in zip(stores, versions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        stages = subject.store.stages(model)
        winners = [v for v, s in stages.items() if s is Stage.PRODUCTION]
        assert len(winners) == 1 and subject.store.production(model) == winners[0]
        assert sorted(v for v, s in stages.items() if s is Stage.ARCHIVED) == sorted(
            set(versions) - set(winners)
        )
        # each promotion archived the one before it, and the history says so, in order
        history = subject.store.history(model)
        promoted = [c.version for c in history if c.to_stage is Stage.PRODUCTION]
        assert promoted[-1] == winners[0] and sorted(promoted) == sorted(versions)
        archived = [(c.version, c.reason) for c in history if c.to_stage is Stage.ARCHIVED]
        assert archived == [
            (before, f"replaced by {model}@{after}")
            for before, after in zip(promoted, promoted[1:])
        ]

    def test_repair_finds_nothing_when_all_agree(self, subject: StageSubject) -> None:
        store, model = subject.store, subject.model
        first, second = staged(subject, 2)
        store.set(model, first, Stage.PRODUCTION, "bob", "")
        store.set(model, second, Stage.PRODUCTION, "bob", "")
        assert store.repair(model) == []
        assert store.stages(model) == {first: Stage.ARCHIVED, second: Stage.PRODUCTION}
