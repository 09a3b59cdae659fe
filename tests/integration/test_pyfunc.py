"""Every registered version carries an MLflow pyfunc model: loaded through MLflow's own API
(``mlflow.pyfunc.load_model("models:/NAME@production")``) on a local tracking store, it predicts
what loralab predicts; the base model is referenced, not copied; a failed model logging
registers nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from loralab.experiments import service as experiments
from loralab.infra.model_registry import MODEL_ARTIFACT, MlflowModelRegistry
from loralab.infra.tracking import tracking_uri
from loralab.registry.service import RegistryService
from loralab.settings import RegistrySettings, Settings, StorageSettings
from loralab.training import TrainConfig, load_predictor
from loralab.training.runs import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["the food was great great", "the phone was awful awful", "quite nice nice service"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Settings, RunPaths]:
    from tests.conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("pyfunc")
    settings = Settings(
        storage=StorageSettings(results_dir=tmp / "results"),
        registry=RegistrySettings(card_dir=tmp / "cards"),
    )
    config = TrainConfig(
        experiment="pyfunc-sent",
        base_model=str(tiny_bert),
        train_file=str(write_csv(tmp / "train.csv", make_rows(60))),
        validation_split=0.2,
        max_steps=8,
        max_length=16,
        batch_size=8,
        lora_dropout=0.0,
        learning_rate=0.02,
        early_stopping_patience=0,
    )
    result = experiments.train(settings, config, user="alice")
    assert result.status == "succeeded"
    from loralab.training.runs import read_state

    assert read_state(result.run).get("registered_model") == "pyfunc-sent@1", read_state(
        result.run
    ).get("registration_error")
    return settings, result.run


@pytest.fixture()
def mlflow_uri(trained: tuple[Settings, RunPaths]) -> Iterator[str]:
    uri = tracking_uri(trained[0])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def test_production_version_loads_and_predicts_like_loralab(
    trained: tuple[Settings, RunPaths], mlflow_uri: str
) -> None:
    settings, run = trained
    RegistryService(settings).transition("pyfunc-sent@1", "Production", "alice", "pyfunc test")
    model = mlflow.pyfunc.load_model("models:/pyfunc-sent@production")
    schema = model.metadata.get_input_schema()
    assert schema is not None and schema.input_names() == ["text"]
    outputs = model.metadata.get_output_schema()
    labels = load_predictor(run, device="cpu").labels
    assert outputs is not None and outputs.input_names() == [
        "label", "label_name", "probability", *(f"p_{name}" for name in labels)
    ]  # fmt: skip
    assert model.metadata.saved_input_example_info is not None

    got = model.predict(pd.DataFrame({"text": TEXTS}))
    expected = load_predictor(run, device="cpu", precision="fp32").predict(TEXTS)
    assert got["label_name"].tolist() == [p.label_name for p in expected]
    assert got["label"].tolist() == [p.label for p in expected]
    for (_, row), p in zip(got.iterrows(), expected, strict=True):
        assert row["probability"] == pytest.approx(p.probability, abs=1e-5)
        for name, value in p.probabilities.items():
            assert row[f"p_{name}"] == pytest.approx(value, abs=1e-5)


def test_the_model_is_small_and_references_its_base(
    trained: tuple[Settings, RunPaths], mlflow_uri: str, tmp_path: Path
) -> None:
    local = Path(
        mlflow.artifacts.download_artifacts("models:/pyfunc-sent/1", dst_path=str(tmp_path))
    )
    assert (local / "MLmodel").is_file()
    files = [p for p in local.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "adapter_model.safetensors" in names and "loralab_model.py" in names
    assert "model.safetensors" not in names  # the base is not copied
    assert not any(p.suffix in {".pkl", ".pickle", ".bin"} for p in files)  # nothing pickled


def test_mlflow_scoring_server_answers(trained: tuple[Settings, RunPaths], mlflow_uri: str) -> None:
    """The app ``mlflow models serve`` runs, in process: /ping and /invocations."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    client = TestClient(scoring_server.init(mlflow.pyfunc.load_model("models:/pyfunc-sent/1")))
    assert client.get("/ping").status_code == 200
    body = {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}}
    answer = client.post("/invocations", json=body)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    expected = load_predictor(trained[1], device="cpu").predict(TEXTS)
    assert [p["label_name"] for p in predictions] == [p.label_name for p in expected]


def test_bad_input_is_a_clear_error(trained: tuple[Settings, RunPaths], mlflow_uri: str) -> None:
    model = mlflow.pyfunc.load_model("models:/pyfunc-sent/1", model_config={"device": "cpu"})
    assert model.model_config == {"device": "cpu", "precision": "fp32"}
    with pytest.raises(Exception, match="text"):
        model.predict(pd.DataFrame({"text": ["fine", "   "]}))


def test_a_failed_model_logging_registers_nothing(trained: tuple[Settings, RunPaths]) -> None:
    settings, run = trained
    from loralab.training.runs import read_state

    def broken(_run: object, _path: Path) -> None:
        raise OSError("disk full while writing the MLflow model")

    registry = MlflowModelRegistry.from_settings(settings, packager=broken)
    service = RegistryService(settings, registry=registry)
    before = [v.version for v in registry.versions("pyfunc-sent")]
    cards_before = sorted(settings.registry_card_dir.rglob("*.json"))
    mlflow_run = str(read_state(run)["tracker_run_id"])
    with pytest.raises(OSError, match="disk full"):
        service.register_run(
            name="pyfunc-sent",
            run_id=mlflow_run,
            base_model="tiny",
            language="English",
            labels=["positive", "negative"],
            metrics={"accuracy": 1.0},
            dataset={"name": "file", "version": "1"},
            lora={"r": 8, "alpha": 16, "dropout": 0.0},
            training={},
            created_by="alice",
            tags={"loralab.run_id": run.run_id},
        )
    assert [v.version for v in registry.versions("pyfunc-sent")] == before
    assert sorted(settings.registry_card_dir.rglob("*.json")) == cards_before
    # the version's source is the logged MLflow model
    version = registry.client.get_model_version("pyfunc-sent", "1")
    assert version.source.rstrip("/").endswith(f"/{MODEL_ARTIFACT}")


# -- the same registered model through `loralab predict --file` ------------------------------


def test_predict_file_cli_over_csv_jsonl_and_parquet(
    trained: tuple[Settings, RunPaths], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from loralab.entrypoints.cli.main import app

    settings, run = trained
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(settings.storage.results_dir))
    monkeypatch.setenv("LORALAB_REGISTRY__CARD_DIR", str(settings.registry_card_dir))
    monkeypatch.chdir(tmp_path)
    expected = load_predictor(run, device="cpu").predict(TEXTS)
    inputs = {
        "in.csv": "text\n" + "\n".join([TEXTS[0], '""', TEXTS[1], '"   "', TEXTS[2]]) + "\n",
        "in.jsonl": "\n".join(
            [json.dumps({"text": TEXTS[0]}), json.dumps({"text": 7.5, "x": 1}), "{broken",
             json.dumps({"text": TEXTS[1]}), json.dumps({"text": None}),
             json.dumps({"text": TEXTS[2]})]
        ) + "\n",
    }  # fmt: skip
    for name, text in inputs.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    pq.write_table(pa.table({"text": [TEXTS[0], None, TEXTS[1], TEXTS[2]]}), "in.parquet")
    bad_lines = {"in.csv": ["line 3", "line 5"], "in.jsonl": ["line 3", "line 5"],
                 "in.parquet": ["row 2"]}  # fmt: skip
    runner = CliRunner()
    for name, bad in bad_lines.items():
        args = ["predict", "--file", name, "--out", f"{name}.preds.csv", "--model",
                "pyfunc-sent@1", "--device", "cpu"]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        for where in bad:
            assert where in result.output, (name, result.output)
        with (tmp_path / f"{name}.preds.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        labels = [r["label_name"] for r in rows]
        if name == "in.jsonl":  # 7.5 is read as the text "7.5" (the one reader's rule)
            labels.pop(1)
        assert labels == [p.label_name for p in expected], name
    missing = runner.invoke(app, ["predict", "--file", "nope.csv", "--out", "x.csv", "--run",
                                  run.run_id])  # fmt: skip
    assert missing.exit_code == 2 and "nope.csv" in missing.output
    assert not (tmp_path / "x.csv").exists()
