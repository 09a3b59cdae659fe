"""Registration, every transition, the gate, history, reconcile, and the single Production."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from tests.helpers.registry_fakes import MemoryRegistry, WordEmbedder, make_settings, register

from loralab.errors import Conflict, InvalidInput, NotFound
from loralab.registry.cards import Stage
from loralab.registry.service import RegistryService


def test_registration_writes_card_in_staging(
    service: RegistryService, fake_registry: MemoryRegistry
) -> None:
    card = register(service)
    assert (card.name, card.version, card.stage) == ("sentiment", "1", Stage.STAGING)
    path = service.settings.registry_card_dir / "sentiment@1.json"
    assert json.loads(path.read_text())["stage"] == "Staging"
    assert fake_registry.get_version("sentiment", "1").stage == "Staging"  # type: ignore[union-attr]
    assert fake_registry.alias_target("sentiment", "staging") == "1"
    assert fake_registry.logged == [(card.run_id, str(path))]
    assert service.history("sentiment")[0].to_stage is Stage.STAGING
    assert abs(sum(v * v for v in card.embedding) - 1.0) < 1e-5


def test_bad_registration_changes_nothing(
    service: RegistryService, fake_registry: MemoryRegistry
) -> None:
    with pytest.raises(InvalidInput, match="labels"):
        register(service, labels=())
    assert fake_registry.models == {}
    assert not service.settings.registry_card_dir.exists() or not list(
        service.settings.registry_card_dir.glob("*.json")
    )


def stages(service: RegistryService, fake: MemoryRegistry, name: str = "sentiment") -> dict:
    cards = {c.version: c.stage.value for c in service.store.all_cards() if c.name == name}
    tags = {v.version: v.stage for v in fake.versions(name)}
    return {"cards": cards, "tags": tags, "production": fake.alias_target(name, "production")}


def test_every_allowed_transition(service: RegistryService, fake_registry: MemoryRegistry) -> None:
    register(service, accuracy=0.8)
    register(service, accuracy=0.9)
    result = service.transition("sentiment@1", "production", "bob", "first")
    assert (result.from_stage, result.to_stage, result.archived) == ("Staging", "Production", [])
    assert stages(service, fake_registry)["production"] == "1"
    result = service.transition("sentiment@2", "Production", "bob", "better")
    assert result.archived == ["sentiment@1"]
    assert stages(service, fake_registry) == {
        "cards": {"1": "Archived", "2": "Production"},
        "tags": {"1": "Archived", "2": "Production"},
        "production": "2",
    }
    service.transition("sentiment@1", "staging", "bob", "retry")  # Archived -> Staging
    service.transition("sentiment@1", "archived", "bob")  # Staging -> Archived
    service.transition("sentiment@2", "archived", "bob", "retire")  # Production -> Archived
    assert stages(service, fake_registry) == {
        "cards": {"1": "Archived", "2": "Archived"},
        "tags": {"1": "Archived", "2": "Archived"},
        "production": None,
    }
    history = service.history("sentiment")
    moves = [(h.version, h.to_dict()["from"], h.to_dict()["to"]) for h in history]
    assert moves == [
        ("1", None, "Staging"),
        ("2", None, "Staging"),
        ("1", "Staging", "Production"),
        ("1", "Production", "Archived"),
        ("2", "Staging", "Production"),
        ("1", "Archived", "Staging"),
        ("1", "Staging", "Archived"),
        ("2", "Production", "Archived"),
    ]
    assert all(h.by == "bob" and h.at > 0 for h in history[2:])
    assert history[3].reason == "replaced by sentiment@2"


@pytest.mark.parametrize(
    ("setup", "ref", "stage"),
    [
        ([], "sentiment@1", "Staging"),  # Staging -> Staging
        ([("1", "Production")], "sentiment@1", "Staging"),  # Production -> Staging
        ([("1", "Archived")], "sentiment@1", "Production"),  # Archived -> Production
        ([("1", "Production")], "sentiment@1", "Production"),
    ],
)
def test_refused_transitions_change_nothing(
    service: RegistryService, fake_registry: MemoryRegistry, setup: list, ref: str, stage: str
) -> None:
    register(service)
    for version, target in setup:
        service.transition(f"sentiment@{version}", target, "bob")
    before = (stages(service, fake_registry), service.history("sentiment"))
    with pytest.raises(Conflict, match="not allowed; allowed: new -> Staging"):
        service.transition(ref, stage, "bob")
    assert (stages(service, fake_registry), service.history("sentiment")) == before


@pytest.mark.parametrize(
    ("ref", "stage", "error"),
    [
        ("sentiment@1", "production ", InvalidInput),
        ("sentiment@1", "Prod", InvalidInput),
        ("sentiment@9", "Production", NotFound),
        ("nothing@1", "Production", NotFound),
        ("sentiment", "Production", InvalidInput),
    ],
)
def test_bad_transition_input(
    service: RegistryService, fake_registry: MemoryRegistry, ref: str, stage: str, error: type
) -> None:
    register(service)
    before = stages(service, fake_registry)
    with pytest.raises(error):
        service.transition(ref, stage, "bob")
    assert stages(service, fake_registry) == before


def test_promotion_gate(service: RegistryService, fake_registry: MemoryRegistry) -> None:
    register(service, accuracy=0.9)
    register(service, accuracy=0.8)  # worse, same dataset version
    register(service, accuracy=0.5, fingerprint="other-data")  # other data: not compared
    service.transition("sentiment@1", "Production", "bob")
    with pytest.raises(Conflict, match="promotion gate"):
        service.transition("sentiment@2", "Production", "bob")
    assert stages(service, fake_registry)["production"] == "1"
    with pytest.raises(InvalidInput, match="reason"):
        service.transition("sentiment@2", "Production", "bob", force=True)
    service.transition("sentiment@2", "Production", "bob", "hotfix", force=True)
    assert service.history("sentiment")[-1].reason == "gate overridden: hotfix"
    service.transition("sentiment@3", "Production", "bob")
    assert stages(service, fake_registry)["production"] == "3"


def test_gate_can_be_switched_off(tmp_path: Path) -> None:
    fake = MemoryRegistry()
    service = RegistryService(make_settings(tmp_path, promotion_gate=False), fake, WordEmbedder())
    register(service, accuracy=0.9)
    register(service, accuracy=0.1)
    service.transition("sentiment@1", "Production", "bob")
    service.transition("sentiment@2", "Production", "bob")
    assert fake.alias_target("sentiment", "production") == "2"


def test_concurrent_promotions_leave_one_production(tmp_path: Path) -> None:
    fake = MemoryRegistry()
    settings = make_settings(tmp_path, promotion_gate=False)
    service = RegistryService(settings, fake, WordEmbedder())
    for _ in range(8):
        register(service)
    for trial in range(15):
        for version in range(1, 9):  # everyone back to Staging
            ref = f"sentiment@{version}"
            stage = service.get_card(ref).stage
            if stage is Stage.PRODUCTION:
                service.transition(ref, "Archived", "bob")
            if service.get_card(ref).stage is Stage.ARCHIVED:
                service.transition(ref, "Staging", "bob")
        barrier = threading.Barrier(8)
        errors: list[Exception] = []

        def promote(version: int) -> None:
            barrier.wait()
            try:
                RegistryService(settings, fake, WordEmbedder()).transition(
                    f"sentiment@{version}", "Production", f"user{version}", f"trial {trial}"
                )
            except Exception as err:  # noqa: BLE001
                errors.append(err)

        threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        state = stages(service, fake)
        assert list(state["cards"].values()).count("Production") == 1
        assert list(state["tags"].values()).count("Production") == 1
        assert state["cards"] == state["tags"]
        assert state["cards"][state["production"]] == "Production"


def test_reconcile_repairs_tampered_cards(
    service: RegistryService, fake_registry: MemoryRegistry
) -> None:
    register(service)
    register(service)
    service.transition("sentiment@1", "Production", "bob")
    path = service.store.path_of("sentiment", "1")
    data = json.loads(path.read_text())
    data["stage"] = "Archived"
    path.write_text(json.dumps(data))
    fake_registry.set_stage_tag("sentiment", "2", "Production")  # stale tag, no alias
    changes = service.reconcile()
    described = {(c.ref, c.what, c.old, c.new) for c in changes}
    assert described == {
        ("sentiment@1", "card stage", "Archived", "Production"),
        ("sentiment@2", "registry tag", "Production", "Archived"),
        ("sentiment@2", "card stage", "Staging", "Archived"),
        ("sentiment@staging", "alias target", "2", None),  # no version is in Staging now
    }
    assert service.get_card("sentiment@1").stage is Stage.PRODUCTION
    assert fake_registry.alias_target("sentiment", "staging") is None
    assert service.reconcile() == []
    with pytest.raises(NotFound):
        service.reconcile("nothing")


def test_reconcile_reports_a_version_without_card(service: RegistryService) -> None:
    register(service)
    register(service)
    service.store.path_of("sentiment", "2").unlink()  # as if it crashed before the card write
    changes = service.reconcile("sentiment")
    assert [(c.ref, c.what) for c in changes] == [("sentiment@2", "missing card")]
