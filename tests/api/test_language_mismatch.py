"""POST /train on data in a language the base model does not read: Chinese data on minilm-l6
(which reads English) is refused by default, before any model or tokenizer loads and before a
job exists; with allow_language_mismatch the job is accepted and its view carries the one-sentence
warning. English data on minilm-l6 gets no warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import Platform, sign_in

from loralab.infra.db import Job

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "sentiment_zh.csv"


def _upload_chinese(client: TestClient, who: dict[str, str]) -> str:
    made = client.post(
        "/datasets",
        data={"name": "zh"},
        files={"file": ("zh.csv", SAMPLE.read_bytes(), "text/csv")},
        headers=who,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["ref"])


def _train(client: TestClient, who: dict[str, str], train_file: str, **more: Any) -> Any:
    body = {"train_file": train_file, "base_model": "minilm-l6", "max_steps": 2, **more}
    return client.post("/train", json=body, headers=who)


def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading any model or tokenizer fails the test: the check reads the catalog only."""
    import transformers

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("a model or tokenizer was loaded")

    for name in ("AutoModelForSequenceClassification", "AutoModel", "AutoTokenizer"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", boom)


def test_chinese_data_on_an_english_model_is_refused_before_any_model_loads(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, found, queue = platform
    alice = sign_in(client, "alice")
    ref = _upload_chinese(client, alice)
    no_model_loads(monkeypatch)
    response = _train(client, alice, ref)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    detail = str(body["detail"])
    assert "allow_language_mismatch" in detail  # the field that lets it through
    assert "Chinese" in detail and "minilm-l6" in detail
    assert "bert-base-chinese" in detail  # the base model that fits
    assert queue.sent == []
    with found.db.session() as session:
        assert session.query(Job).count() == 0


def test_allowed_mismatch_is_accepted_with_the_sentence_in_the_job_view(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, queue = platform
    alice = sign_in(client, "alice")
    ref = _upload_chinese(client, alice)
    no_model_loads(monkeypatch)
    refused = str(_train(client, alice, ref).json()["detail"])
    response = _train(client, alice, ref, allow_language_mismatch=True)
    assert response.status_code == 202, response.text
    job = response.json()
    [warning] = job["warnings"]
    assert "Chinese" in warning and "minilm-l6" in warning and "bert-base-chinese" in warning
    assert warning.rstrip(".").lower() in refused.lower()  # the same sentence as the refusal
    assert client.get(f"/task/{job['task_id']}", headers=alice).json()["warnings"] == [warning]
    assert [job_id for job_id, _ in queue.sent] == [job["task_id"]]


def test_english_data_on_an_english_model_gets_no_warning(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, _ = platform
    alice = sign_in(client, "alice")
    no_model_loads(monkeypatch)
    response = _train(client, alice, "reviews@v1")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["warnings"] == []
    assert client.get(f"/task/{job['task_id']}", headers=alice).json()["warnings"] == []


def test_a_lenient_platform_accepts_the_mismatch_with_the_warning(platform: Platform) -> None:
    client, found, _ = platform
    alice = sign_in(client, "alice")
    ref = _upload_chinese(client, alice)
    found.settings.datasets.api_language_mismatch = "warn"
    response = _train(client, alice, ref)
    assert response.status_code == 202, response.text
    assert "Chinese" in response.json()["warnings"][0]
