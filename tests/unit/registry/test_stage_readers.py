"""Readers of the stage store: the registry service and the prediction service's resolver take
stages only from it (never from the card files), and see every change at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.registry_fakes import (
    MemoryRegistry,
    MemoryStageStore,
    WordEmbedder,
    fake_run,
    make_settings,
    register,
)

from loralab.errors import Conflict, NotFound
from loralab.registry.cards import Stage
from loralab.registry.service import RegistryService
from loralab.serving.resolve import ModelResolver


@pytest.fixture()
def stages() -> MemoryStageStore:
    return MemoryStageStore()


@pytest.fixture()
def registry(tmp_path: Path, stages: MemoryStageStore) -> RegistryService:
    settings = make_settings(tmp_path)
    service = RegistryService(settings, MemoryRegistry(), WordEmbedder(), stages)
    for version in range(1, 4):
        run_id = f"20260101-00000{version}-abc"
        fake_run(settings.storage.results_dir, run_id)
        register(service, "sent", tags={"loralab.run_id": run_id})
    return service


def tamper(service: RegistryService, version: str, stage: Stage) -> None:
    """Write a stage into a card file behind the store's back."""
    path = service.store.path_of("sent", version)
    data = json.loads(path.read_text())
    data["stage"] = stage.value
    path.write_text(json.dumps(data))


def test_the_service_keeps_its_rules_on_any_store(
    registry: RegistryService, stages: MemoryStageStore
) -> None:
    assert stages.stages("sent") == {v: Stage.STAGING for v in "123"}
    registry.transition("sent@1", "Production", "bob", "first")
    result = registry.transition("sent@2", "Production", "bob", "better")
    assert (result.from_stage, result.archived) == ("Staging", ["sent@1"])
    assert stages.production("sent") == "2"
    with pytest.raises(Conflict, match="not allowed"):
        registry.transition("sent@1", "Production", "bob")  # Archived -> Production
    moves = [(c.version, c.to_stage.value) for c in registry.history("sent")]
    assert moves[-3:] == [("1", "Production"), ("1", "Archived"), ("2", "Production")]
    assert registry.reconcile() == []


def test_resolver_reads_stages_from_the_store_not_the_cards(
    registry: RegistryService,
) -> None:
    resolver = ModelResolver(registry.settings, registry)
    registry.transition("sent@1", "Production", "bob")
    tamper(registry, "1", Stage.ARCHIVED)
    tamper(registry, "2", Stage.PRODUCTION)
    handle = resolver.resolve("sent@production")
    assert (handle.key, handle.stage) == ("sent@1", "Production")
    assert resolver.resolve("sent@2").stage == "Staging"
    assert resolver.resolve("sent@staging").key == "sent@3"  # the newest in Staging
    assert resolver.default_ref() == "sent@production"


def test_resolver_sees_a_change_at_once(registry: RegistryService) -> None:
    resolver = ModelResolver(registry.settings, registry)
    with pytest.raises(NotFound, match="no Production version"):
        resolver.resolve("sent@production")
    registry.transition("sent@2", "Production", "bob")  # the memory store writes no card
    assert resolver.resolve("sent@production").key == "sent@2"
    registry.transition("sent@3", "Archived", "bob")
    assert resolver.resolve("sent@latest").key == "sent@2"
    assert resolver.resolve("sent@staging").key == "sent@1"
    assert resolver.resolve("sent@v3").stage == "Archived"  # dataset-style versions work too
    for version in "12":
        registry.transition(f"sent@{version}", "Archived", "bob")
    with pytest.raises(NotFound, match="only archived"):
        resolver.resolve("sent@latest")
    with pytest.raises(NotFound, match="every registered version is archived"):
        resolver.default_ref()
