"""Streamed ``POST /predict/batch`` (Accept: application/x-ndjson) on a real trained adapter:
every row, in order, equal to the JSON answer; the same caps; the JSON answer unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loralab.entrypoints.api.serving_app import create_serving_app
from loralab.experiments import service as experiments
from loralab.settings import RegistrySettings, ServingSettings, Settings, StorageSettings
from loralab.training import TrainConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NDJSON = {"Accept": "application/x-ndjson"}
WORDS = ["great", "awful", "nice", "bad", "the film was", "quite", "terrible"]


def _settings(home: Path, **serving: object) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=home / "results"),
        registry=RegistrySettings(card_dir=home / "cards"),
        serving=ServingSettings(precision="fp32", mode="adapters", **serving),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    from tests.conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("stream")
    data = write_csv(tmp / "train.csv", make_rows(40))
    config = TrainConfig(
        experiment="stream",
        base_model=str(tiny_bert),
        train_file=str(data),
        validation_split=0.2,
        epochs=1,
        batch_size=8,
        lora_dropout=0.0,
        learning_rate=0.02,
        early_stopping_patience=0,
    )
    result = experiments.train(_settings(tmp), config, user="alice")
    assert result.status == "succeeded"
    return tmp


def texts(n: int) -> list[str]:
    """Distinct word pairs (numbers are unknown to the tiny vocabulary)."""
    k = len(WORDS)
    return [f"{WORDS[i % k]} {WORDS[(i // k) % k]} {WORDS[(i // k // k) % k]}" for i in range(n)]


def test_every_row_in_order_and_equal_to_the_json_answer(home: Path) -> None:
    batch = texts(45)  # micro_batch_size 8: six chunks, the last one short
    settings = _settings(home, micro_batch_size=8, max_batch_texts=50)
    with TestClient(create_serving_app(settings, experiment="stream")) as client:
        plain = client.post("/predict/batch", json={"texts": batch})
        with client.stream(
            "POST", "/predict/batch", json={"texts": batch}, headers=NDJSON
        ) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("application/x-ndjson")
            rows = [json.loads(line) for line in streamed.iter_lines() if line]
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    expected = plain.json()["predictions"]
    assert plain.json()["count"] == len(batch) == len(rows)
    assert [r["index"] for r in rows] == list(range(len(batch)))
    for row, want in zip(rows, expected, strict=True):
        assert (row["label_name"], row["model_version"]) == (
            want["label_name"],
            want["model_version"],
        )
        assert row["probability"] == pytest.approx(want["probability"], abs=1e-4)
    # the texts differ, so do their probabilities: a row out of place would be caught
    assert len({r["probability"] for r in rows}) > len(batch) // 2
    # six forward passes of at most 8 texts, not one of 45
    metrics = client_metrics(settings, batch)
    assert "loralab_predict_batch_size_count 6.0" in metrics


def client_metrics(settings: Settings, batch: list[str]) -> str:
    with TestClient(
        create_serving_app(settings, experiment="stream"), client=("127.0.0.1", 5)
    ) as client:
        response = client.post("/predict/batch", json={"texts": batch}, headers=NDJSON)
        assert response.status_code == 200
        return client.get("/metrics").text


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"texts": ["good"] * 5}, 413, "at most 4"),
        ({"texts": []}, 422, "at least one"),
        ({"texts": ["good", " "]}, 422, "texts[1]"),
        ({"texts": ["good", "x" * 101]}, 413, "texts[1]"),
        ({"texts": ["good"], "model": "nobody@production"}, 404, "no registered model"),
        ({"texts": ["good"], "extra": 1}, 422, "extra"),
    ],
)
def test_streamed_requests_keep_the_caps(home: Path, body: dict, status: int, words: str) -> None:
    settings = _settings(home, max_batch_texts=4, max_text_chars=100)
    with TestClient(create_serving_app(settings, experiment="stream")) as client:
        response = client.post("/predict/batch", json=body, headers=NDJSON)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"  # an error, not a stream
    assert words in response.text


def test_body_over_the_limit_is_refused_before_parsing(home: Path) -> None:
    settings = _settings(home, max_batch_texts=2, max_text_chars=10)
    big = json.dumps({"texts": ["a" * 70_000]})
    with TestClient(create_serving_app(settings, experiment="stream")) as client:
        response = client.post(
            "/predict/batch",
            content=big,
            headers={**NDJSON, "Content-Type": "application/json"},
        )
    assert response.status_code == 413
