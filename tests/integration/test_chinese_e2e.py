"""Chinese end to end: a tiny random BERT with a Chinese character vocabulary (built here) trains
on the Chinese sample, saves, registers a card that says Chinese, and the prediction service
serves it in process and answers Chinese texts in the data's language.

The base model is a local folder whose name says nothing of its language, so the training
library records English as the base's language: the card and the answers must still say the
data's language (Chinese), the base's languages stay a separate field."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import build_tiny_bert

from loralab.entrypoints.api.serving_app import create_serving_app
from loralab.experiments import service as experiments
from loralab.registry.service import RegistryService
from loralab.settings import RegistrySettings, ServingSettings, Settings, StorageSettings
from loralab.training import TrainConfig, load_predictor
from loralab.training.runs import RunPaths, read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "sentiment_zh.csv"
TEXTS = ["这部电影太精彩了，强烈推荐", "质量太差了，用了两天就坏了", "服务很好，下次还来"]

LOCAL = ("127.0.0.1", 50000)  # a loopback peer: /health/details and /metrics answer it


def sample_texts() -> list[str]:
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def build_tiny_chinese_bert(directory: Path) -> Path:
    """The tiny BERT, its vocabulary the sample's characters (one token each)."""
    chars = sorted({c for text in sample_texts() + TEXTS for c in text if not c.isspace()})
    return build_tiny_bert(directory, words=chars, max_positions=128)


def _settings(tmp: Path) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp / "results"),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        serving=ServingSettings(precision="fp32", mode="adapters"),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, RunPaths, Path]:
    tmp = tmp_path_factory.mktemp("zh")
    base = build_tiny_chinese_bert(tmp / "models" / "tiny-zh")
    settings = _settings(tmp)
    config = TrainConfig(
        experiment="zh",
        base_model=str(base),
        train_file=str(SAMPLE),
        validation_split=0.2,
        max_length=64,
        max_steps=12,
        batch_size=8,
        eval_steps=6,
        learning_rate=0.02,
        early_stopping_patience=0,
    )
    result = experiments.train(settings, config, user="alice")
    assert result.status == "succeeded", result
    return settings, result.run, base


def test_the_chinese_vocabulary_reads_the_sample_without_unknown_tokens(
    trained: tuple[Settings, RunPaths, Path],
) -> None:
    from transformers import AutoTokenizer

    _, run, base = trained
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokens = tokenizer.tokenize(TEXTS[0])
    assert tokens == list(TEXTS[0])  # one token per character
    ids = [i for t in sample_texts() for i in tokenizer(t)["input_ids"]]
    assert tokenizer.unk_token_id not in ids
    assert read_state(run)["data_language"] == "Chinese"


def test_the_card_says_chinese_and_keeps_the_bases_languages_apart(
    trained: tuple[Settings, RunPaths, Path],
) -> None:
    settings, run, _ = trained
    [card] = [c for c in RegistryService(settings).index().cards if c.name == "zh"]
    info = json.loads(run.model_info.read_text(encoding="utf-8"))
    assert card.ref == "zh@1" and card.labels == ["negative", "positive"]
    assert card.language == "Chinese"
    assert card.base_languages == [info["language"]]
    assert info["language"] != "Chinese"  # the base's language is recorded, not the data's


def test_the_service_predicts_chinese_texts_and_answers_in_the_datas_language(
    trained: tuple[Settings, RunPaths, Path],
) -> None:
    settings, run, _ = trained
    predictor = load_predictor(run, device="cpu", precision="fp32")
    expected = [(p.label_name, p.probability) for p in predictor.predict(TEXTS)]
    with TestClient(create_serving_app(settings, model="zh@1"), client=LOCAL) as client:
        health = client.get("/health/details").json()
        assert (health["model_version"], health["language"]) == ("zh@1", "Chinese")
        assert health["base_model"] == "tiny-zh"
        for text, (label, probability) in zip(TEXTS, expected, strict=True):
            got = client.post("/predict", json={"text": text}).json()
            assert got["label_name"] == label in {"positive", "negative"}
            assert got["probability"] == pytest.approx(probability, abs=1e-4)
            assert (got["language"], got["model_version"]) == ("Chinese", "zh@1")
        batch = client.post("/predict/batch", json={"texts": TEXTS}).json()
    assert [p["label_name"] for p in batch["predictions"]] == [label for label, _ in expected]
    assert {p["language"] for p in batch["predictions"]} == {"Chinese"}


def test_an_unregistered_run_answers_in_the_language_its_state_records(
    trained: tuple[Settings, RunPaths, Path],
) -> None:
    settings, run, _ = trained
    copy = run.root.parent / "20990101-000000-zh-copy"
    shutil.copytree(run.root, copy)
    state = json.loads((copy / "run.json").read_text(encoding="utf-8"))
    state.pop("registered_model", None)  # served from its own folder, not through a card
    (copy / "run.json").write_text(json.dumps(state), encoding="utf-8")
    try:
        with TestClient(create_serving_app(settings, model=copy.name), client=LOCAL) as client:
            got = client.post("/predict", json={"text": TEXTS[0]}).json()
        assert got["model_version"] == f"run:{copy.name}" and got["language"] == "Chinese"
    finally:
        shutil.rmtree(copy)


@pytest.mark.parametrize("mode", ["error", "warn"])
def test_loralab_train_says_the_mismatch_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Chinese data on minilm-l6 (reads English): the error mode exits 2 with the sentence, the
    warn mode says it and goes on to load the model (stopped here); English data: no word."""
    from typer.testing import CliRunner

    from loralab.entrypoints.cli import common
    from loralab.entrypoints.cli.main import app

    class Loaded(Exception):
        pass

    def stop(*_: object, **__: object) -> None:
        raise Loaded

    monkeypatch.setattr(experiments, "prepare_training", stop)
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("LORALAB_DATASETS__LANGUAGE_MISMATCH", mode)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common.console, "_width", 200)
    english = SAMPLE.with_name("sentiment_en.csv")
    said = {}
    for data in (SAMPLE, english):
        recipe = SAMPLE.parents[2] / "configs" / "demo.yaml"  # minilm-l6
        args = ["train", str(recipe), f"train_file={data}", "base_model=minilm-l6"]
        result = CliRunner().invoke(app, args)
        said[data] = " ".join(result.output.split())
        if data == SAMPLE and mode == "error":
            assert result.exit_code == 2, result.output
        else:
            assert isinstance(result.exception, Loaded), result.output  # got to the model
    sentence = "data is 100% Chinese but base model minilm-l6 reads English: use base_model"
    assert sentence in said[SAMPLE] and "bert-base-chinese" in said[SAMPLE]
    assert "reads English" not in said[english]
