"""Model registry end to end: a real MLflow SQLite store, a trained tiny BERT, real MiniLM."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.stage_store_contract import StageStoreContract, StageSubject, card_for
from typer.testing import CliRunner

from loralab.entrypoints.cli.models import models_app
from loralab.experiments import service as experiments
from loralab.infra.model_registry import STAGE_TAG, MlflowModelRegistry
from loralab.registry.cards import Stage, validate_card
from loralab.registry.embeddings import MiniLMEmbedder
from loralab.registry.mlflow_stages import MlflowStageStore
from loralab.registry.service import RegistryService
from loralab.registry.store import CardStore
from loralab.settings import RegistrySettings, Settings, StorageSettings
from loralab.training import TrainConfig
from loralab.training.runs import read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def settings_for(tmp_path: Path, **registry: object) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        registry=RegistrySettings(card_dir=tmp_path / "cards", **registry),  # type: ignore[arg-type]
    )


def config_for(model: Path, data: Path) -> TrainConfig:
    return TrainConfig(
        experiment="tiny-sentiment",
        base_model=str(model),
        train_file=str(data),
        validation_split=0.2,
        epochs=2,
        batch_size=16,
        learning_rate=0.02,
        early_stopping_patience=0,
        logging_steps=5,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Settings, str]:
    from tests.conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("registry")
    data = write_csv(tmp / "train.csv", make_rows(80))
    settings = settings_for(tmp)
    result = experiments.train(settings, config_for(tiny_bert, data), user="carol")
    assert result.status == "succeeded"
    assert read_state(result.run)["registered_model"] == "tiny-sentiment@1"
    return settings, result.tracker_run_id


def mlflow_state(settings: Settings, name: str) -> dict:
    registry = MlflowModelRegistry.from_settings(settings)
    return {
        "tags": {v.version: v.stage for v in registry.versions(name)},
        "production": registry.alias_target(name, "production"),
    }


def test_training_registers_a_version_with_a_card(trained: tuple[Settings, str]) -> None:
    settings, run_id = trained
    service = RegistryService(settings)
    card = service.get_card("tiny-sentiment@1")
    assert card.run_id == run_id and card.created_by == "carol"
    assert card.stage is Stage.STAGING and card.labels == ["negative", "positive"]
    assert card.dataset.name == "train.csv" and card.dataset.fingerprint
    assert set(card.metrics) == {"accuracy", "macro_f1"} and card.lora.r == 8
    assert abs(np.linalg.norm(card.embedding) - 1.0) < 1e-4
    client = MlflowModelRegistry.from_settings(settings).client
    version = client.get_model_version("tiny-sentiment", "1")
    assert version.run_id == run_id and version.tags[STAGE_TAG] == "Staging"
    assert version.source.endswith("/model")  # the MLflow pyfunc model (registry/pyfunc.py)
    logged = {a.path for a in client.list_artifacts(run_id, "model")}
    assert {"model/MLmodel", "model/artifacts"} <= logged
    artifacts = [a.path for a in client.list_artifacts(run_id, "model_card")]
    assert artifacts == ["model_card/tiny-sentiment@1.json"]


def test_stages_on_mlflow_concurrency_and_reconcile(trained: tuple[Settings, str]) -> None:
    settings, run_id = trained
    settings = settings.model_copy(
        update={"registry": settings.registry.model_copy(update={"promotion_gate": False})}
    )
    service = RegistryService(settings)
    base = service.get_card("tiny-sentiment@1")
    for _ in range(7):  # more versions of the same run
        service.register_run(
            name="tiny-sentiment",
            run_id=run_id,
            base_model=base.base_model,
            language=base.language,
            labels=base.labels,
            metrics=base.metrics,
            dataset=base.dataset.model_dump(),
            lora=base.lora.model_dump(),
            training=base.training,
            created_by="carol",
        )
    service.transition("tiny-sentiment@1", "Production", "dave", "first")
    assert mlflow_state(settings, "tiny-sentiment")["production"] == "1"
    result = service.transition("tiny-sentiment@2", "Production", "dave", "second")
    assert result.archived == ["tiny-sentiment@1"]
    state = mlflow_state(settings, "tiny-sentiment")
    assert state["production"] == "2" and state["tags"]["1"] == "Archived"

    for trial in range(4):
        for v in range(1, 9):
            stage = service.get_card(f"tiny-sentiment@{v}").stage
            if stage is Stage.PRODUCTION:
                service.transition(f"tiny-sentiment@{v}", "Archived", "dave")
            if service.get_card(f"tiny-sentiment@{v}").stage is Stage.ARCHIVED:
                service.transition(f"tiny-sentiment@{v}", "Staging", "dave")
        barrier = threading.Barrier(8)
        errors: list[Exception] = []

        def promote(v: int) -> None:
            barrier.wait()
            try:
                RegistryService(settings).transition(
                    f"tiny-sentiment@{v}", "Production", f"u{v}", f"race {trial}"
                )
            except Exception as err:  # noqa: BLE001
                errors.append(err)

        threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        state = mlflow_state(settings, "tiny-sentiment")
        cards = {c.version: c.stage.value for c in service.store.all_cards()}
        assert list(state["tags"].values()).count("Production") == 1
        assert cards == state["tags"]
        assert cards[state["production"]] == "Production"

    production = mlflow_state(settings, "tiny-sentiment")["production"]
    path = service.store.path_of("tiny-sentiment", production)
    tampered = json.loads(path.read_text())
    tampered["stage"] = "Staging"
    path.write_text(json.dumps(tampered))
    changes = service.reconcile("tiny-sentiment")
    assert [(c.ref, c.old, c.new) for c in changes] == [
        (f"tiny-sentiment@{production}", "Staging", "Production")
    ]
    assert service.get_card(f"tiny-sentiment@{production}").stage is Stage.PRODUCTION


def test_cli_commands(trained: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = trained
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(settings.storage.results_dir))
    monkeypatch.setenv("LORALAB_REGISTRY__CARD_DIR", str(settings.registry_card_dir))
    runner = CliRunner()
    out = runner.invoke(models_app, ["card", "tiny-sentiment@1"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["name"] == "tiny-sentiment"
    out = runner.invoke(models_app, ["search", "--min-metric", "accuracy=0", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["total"] >= 1
    out = runner.invoke(models_app, ["recommend", "english sentiment model", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["results"][0]["reasons"]
    for bad in (
        ["promote", "tiny-sentiment@1", "--to", "production "],
        ["promote", "tiny-sentiment@99"],
        ["search", "--limit", "1000000"],
        ["recommend", ""],
    ):
        out = runner.invoke(models_app, bad)
        assert out.exit_code == 2, (bad, out.output)
        assert "error:" in out.output
    for command in (["history", "tiny-sentiment"], ["list"], ["show", "tiny-sentiment"]):
        out = runner.invoke(models_app, command)
        assert out.exit_code == 0, (command, out.output)
    assert "reconcile" in runner.invoke(models_app, ["--help"]).output


def test_minilm_embeds_a_query_to_a_unit_vector() -> None:
    vectors = MiniLMEmbedder().embed(["lightweight English sentiment model", "spam filter"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_failed_registration_keeps_the_run(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_rows, write_csv

    settings = settings_for(tmp_path)
    settings.registry_card_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.registry_card_dir.write_text("not a folder")  # every card write fails
    data = write_csv(tmp_path / "train.csv", make_rows(40))
    config = config_for(tiny_bert, data).model_copy(update={"epochs": 1})
    result = experiments.train(settings, config)
    assert result.status == "succeeded"
    state = read_state(result.run)
    assert "registered_model" not in state and state["registration_error"]


@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowModelRegistry, str]:
    """A throwaway MLflow SQLite store with one run to register versions from."""
    tmp = tmp_path_factory.mktemp("stage-contract")
    registry = MlflowModelRegistry(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = registry.client.create_experiment(
        "contract", artifact_location=(tmp / "artifacts").as_uri()
    )
    return registry, registry.client.create_run(experiment).info.run_id


class TestMlflowStageStoreOnSqlite(StageStoreContract):
    """The stage store contract on a real MLflow registry (aliases, tags) and a card folder."""

    @pytest.fixture()
    def subject(
        self, sqlite_registry: tuple[MlflowModelRegistry, str], tmp_path: Path
    ) -> StageSubject:
        registry, run_id = sqlite_registry
        root = tmp_path / "cards"

        def new_version(name: str) -> str:
            version = registry.register(name, run_id)
            CardStore(root).write(validate_card(card_for(name, version)))
            return version

        return StageSubject(
            MlflowStageStore(registry, CardStore(root)),
            new_version,
            another=lambda: MlflowStageStore(registry, CardStore(root)),
            model=f"contract-{tmp_path.name}".replace("_", "-")[:90],
        )
