"""Prediction service over real HTTP: two tiny adapters trained to opposite labels on one base."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from loralab.entrypoints.api.serving_app import create_serving_app
from loralab.experiments import service as experiments
from loralab.registry.service import RegistryService
from loralab.settings import RegistrySettings, ServingSettings, Settings, StorageSettings
from loralab.training import TrainConfig, load_predictor
from loralab.training.runs import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["the food was great great", "the phone was awful awful", "quite nice nice service"]

LOCAL = ("127.0.0.1", 50000)  # a loopback peer: /health/details and /metrics answer it


def _settings(tmp: Path, **serving: object) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp / "results"),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        serving=ServingSettings(refresh_seconds=0.2, precision="fp32", mode="adapters", **serving),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, dict]:
    """sent@1 learns the keywords; sent@2 learns them backwards (labels swapped)."""
    from tests.conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("serving")
    settings = _settings(tmp)
    runs = {}
    for version, labels in (("1", ("positive", "negative")), ("2", ("negative", "positive"))):
        data = write_csv(tmp / f"train{version}.csv", make_rows(160, labels=labels))
        config = TrainConfig(
            experiment="sent",
            base_model=str(tiny_bert),
            train_file=str(data),
            validation_split=0.2,
            epochs=8,
            batch_size=8,
            lora_dropout=0.0,
            learning_rate=0.02,
            early_stopping_patience=0,
        )
        result = experiments.train(settings, config, user="alice")
        assert result.status == "succeeded" and result.report["accuracy"] >= 0.9
        runs[f"sent@{version}"] = result.run
    return tmp, runs


@pytest.fixture()
def env(trained: tuple[Path, dict], tmp_path: Path) -> tuple[Settings, dict]:
    """Private copies of the cards and the MLflow registry: stage changes stay in one test."""
    tmp, runs = trained
    cards = tmp_path / "cards"
    shutil.copytree(tmp / "cards", cards)
    shutil.copy(tmp / "results" / "mlflow.db", tmp_path / "mlflow.db")
    settings = _settings(tmp)
    settings.registry.card_dir = cards
    settings.mlflow.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return settings, runs


def direct(run: RunPaths, texts: list[str]) -> list[tuple[str, float]]:
    predictor = load_predictor(run, device="cpu", precision="fp32")
    return [(p.label_name, p.probability) for p in predictor.predict(texts)]


def test_predictions_match_direct_model_calls(env: tuple[Settings, dict]) -> None:
    settings, runs = env
    with TestClient(create_serving_app(settings, model="sent@1"), client=LOCAL) as client:
        health = client.get("/health/details").json()
        assert health["model_loaded"] and health["model_version"] == "sent@1"
        assert health["device"].startswith("cpu")
        for version in ("sent@1", "sent@2"):
            expected = direct(runs[version], TEXTS)
            for text, (label, prob) in zip(TEXTS, expected, strict=True):
                got = client.post("/predict", json={"text": text, "model": version}).json()
                assert got["label_name"] == label
                assert got["probability"] == pytest.approx(prob, abs=1e-4)
                assert got["model_version"] == version and got["latency_ms"] > 0
                assert got["base_model"] == "tiny-bert"  # a local base: its name, not its path
                assert set(got) >= {"label", "language"}
        batch = client.post("/predict/batch", json={"texts": TEXTS, "model": "sent@2"}).json()
        assert [p["label_name"] for p in batch["predictions"]] == [
            label for label, _ in direct(runs["sent@2"], TEXTS)
        ]
        # the two adapters disagree on every text: they were trained to opposite labels
        assert [label for label, _ in direct(runs["sent@1"], TEXTS)] != [
            p["label_name"] for p in batch["predictions"]
        ]
        assert "sent@1" in health["loaded"]


def test_run_id_and_merged_mode_give_the_same_answer(env: tuple[Settings, dict]) -> None:
    settings, runs = env
    settings.serving.mode = "merged"
    run = runs["sent@1"]
    with TestClient(create_serving_app(settings, model=run.run_id), client=LOCAL) as client:
        assert client.get("/health/details").json()["loaded"] == ["sent@1 (merged)"]
        got = client.post("/predict", json={"text": TEXTS[0]}).json()
    assert (got["label_name"], got["model_version"]) == (direct(run, TEXTS[:1])[0][0], "sent@1")


@pytest.mark.parametrize("mode", ["adapters", "merged"])
def test_alias_switches_without_restart_and_archived_is_never_served(
    env: tuple[Settings, dict], mode: str
) -> None:
    settings, runs = env
    settings.serving.mode = mode
    registry = RegistryService(settings)
    registry.transition("sent@1", "Production", user="admin")
    with TestClient(create_serving_app(settings), client=LOCAL) as client:
        first = client.post("/predict", json={"text": TEXTS[0]}).json()
        assert first["model_version"] == "sent@1"
        registry.transition("sent@2", "Production", user="admin", force=True, reason="test")
        named = client.post("/predict", json={"text": TEXTS[0], "model": "sent@production"})
        assert named.json()["model_version"] == "sent@2"  # a named alias: at once
        deadline = time.time() + 5
        while client.get("/health/details").json()["model_version"] != "sent@2":
            assert time.time() < deadline, "promotion not picked up within 5 s"
            time.sleep(0.1)
        second = client.post("/predict", json={"text": TEXTS[0]}).json()
        assert second["model_version"] == "sent@2" and second["label"] != first["label"]
        if mode == "merged":  # merged beside the model thread; then the old one is let go
            deadline = time.time() + 30
            while "sent@2 (merged)" not in client.get("/health/details").json()["loaded"]:
                assert time.time() < deadline, "the new default was not merged within 30 s"
                time.sleep(0.1)
            assert "sent@1 (merged)" not in client.get("/health/details").json()["loaded"]
            merged = client.post("/predict", json={"text": TEXTS[0]}).json()
            assert (merged["model_version"], merged["label"]) == ("sent@2", second["label"])
        registry.transition("sent@2", "Archived", user="admin")
        gone = client.post("/predict", json={"text": TEXTS[0], "model": "sent@production"})
        assert gone.status_code == 404 and "no Production" in gone.json()["detail"]
        deadline = time.time() + 5
        while client.get("/health/details").json()["model_version"] is not None:
            assert time.time() < deadline, "archive not picked up within 5 s"
            time.sleep(0.1)
        assert client.post("/predict", json={"text": TEXTS[0]}).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": ""}, 422, "text"),
        ({"text": "   "}, 422, "empty"),
        ({"text": "good " * 30}, 413, "limit is 100"),
        ({"texts": ["good"] * 5}, 413, "at most 4"),
        ({"texts": []}, 422, "at least one"),
        ({"text": "good", "model": "nobody@production"}, 404, "no registered model"),
        ({"text": "good", "model": "sent@9"}, 404, "no version"),
        ({"text": "good", "model": "../../etc/passwd"}, 422, "NAME@production"),
        ({"text": "good", "owner": "mallory"}, 422, "owner"),
    ],
)
def test_limits_give_clear_errors(
    env: tuple[Settings, dict], body: dict, status: int, words: str
) -> None:
    settings, _ = env
    settings.serving.max_text_chars = 100
    settings.serving.max_batch_texts = 4
    path = "/predict/batch" if "texts" in body else "/predict"
    with TestClient(create_serving_app(settings, model="sent@1"), client=LOCAL) as client:
        response = client.post(path, json=body)
    assert response.status_code == status
    assert words in response.text


def test_truncation_when_configured(env: tuple[Settings, dict]) -> None:
    settings, _ = env
    settings.serving.max_text_chars = 20
    settings.serving.truncate = True
    with TestClient(create_serving_app(settings, model="sent@1"), client=LOCAL) as client:
        got = client.post("/predict", json={"text": "great " * 50}).json()
    assert got["truncated"] is True and got["label_name"] in {"positive", "negative"}


def test_a_model_without_safetensors_is_refused(env: tuple[Settings, dict]) -> None:
    settings, runs = env
    run = runs["sent@1"]
    fake = run.root.parent / "20990101-000000-pickle"
    shutil.copytree(run.root, fake)
    state = json.loads((fake / "run.json").read_text())
    state.pop("registered_model", None)  # an unregistered run: served from its own folder
    (fake / "run.json").write_text(json.dumps(state))
    weights = fake / "artifacts" / "adapter" / "adapter_model.safetensors"
    weights.rename(weights.with_name("adapter_model.bin"))
    try:
        with TestClient(create_serving_app(settings, model="sent@1"), client=LOCAL) as client:
            response = client.post("/predict", json={"text": "good", "model": fake.name})
        assert response.status_code == 422
        assert "safetensors" in response.json()["detail"]
    finally:
        shutil.rmtree(fake)


def test_metrics_are_exposed_per_version(env: tuple[Settings, dict]) -> None:
    settings, _ = env
    with TestClient(create_serving_app(settings, model="sent@1"), client=LOCAL) as client:
        client.post("/predict", json={"text": TEXTS[0]})
        client.post("/predict", json={"text": ""})
        text = client.get("/metrics").text
    assert 'loralab_predictions_total{label="positive",model_version="sent@1"}' in text
    assert 'loralab_predict_latency_seconds_count{model_version="sent@1"} 1.0' in text
    assert "loralab_predict_probability_bucket" in text
    assert 'loralab_predict_errors_total{status="422"} 1.0' in text
    assert 'route="/predict"' in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def live(env: tuple[Settings, dict]) -> Iterator[tuple[str, dict]]:
    """The app under a real uvicorn server on a free port."""
    settings, runs = env
    settings.serving.micro_batch_wait_ms = 5
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_serving_app(settings, model="sent@1"), port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", runs
    server.should_exit = True
    thread.join(10)


def test_concurrent_requests_for_two_adapters_never_mix(live: tuple[str, dict]) -> None:
    url, runs = live
    expected = {v: direct(runs[v], TEXTS) for v in ("sent@1", "sent@2")}

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, int, dict]:
        version = ("sent@1", "sent@2")[i % 2]
        body = {"text": TEXTS[i % 3], "model": version}
        return version, i % 3, (await client.post(f"{url}/predict", json=body)).json()

    async def many() -> list[tuple[str, int, dict]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(one(client, i) for i in range(120)))

    for version, index, got in asyncio.run(many()):
        label, prob = expected[version][index]
        assert got["model_version"] == version
        assert got["label_name"] == label and got["probability"] == pytest.approx(prob, abs=1e-4)
    metrics = httpx.get(f"{url}/metrics").text
    batches = [line for line in metrics.splitlines() if "loralab_predict_batch_size_count" in line]
    count = float(batches[0].split()[-1])
    assert count < 120, "concurrent requests were not gathered into micro-batches"


def test_lru_cache_evicts_and_reloads_adapters_correctly(env: tuple[Settings, dict]) -> None:
    settings, runs = env
    settings.serving.cache_size = 1
    expected = {v: direct(runs[v], TEXTS[:1])[0] for v in ("sent@1", "sent@2")}
    with TestClient(create_serving_app(settings, model="sent@1"), client=LOCAL) as client:
        for version in ("sent@2", "sent@1", "sent@2", "sent@1"):
            got = client.post("/predict", json={"text": TEXTS[0], "model": version}).json()
            assert (got["label_name"], got["model_version"]) == (expected[version][0], version)
            assert got["probability"] == pytest.approx(expected[version][1], abs=1e-4)
            assert client.get("/health/details").json()["loaded"] == [version]
