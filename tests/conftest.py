"""Shared fixtures: a tiny randomly initialised BERT built from a config, and small datasets."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

POSITIVE = ["good", "great", "fine", "nice", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "sad", "nasty", "ugly"]
FILLER = ["the", "movie", "food", "phone", "was", "very", "quite", "really", "service", "it"]


@pytest.fixture(scope="session", autouse=True)
def _offline(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may reach a model hub."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    yield
    mp.undo()


def write_vocab(path: Path) -> None:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(specials + POSITIVE + NEGATIVE + FILLER) + "\n", encoding="utf-8")


def build_tiny_bert(directory: Path, nan_weights: bool = False) -> Path:
    """A 2-layer, 32-wide BERT with a 27-word vocabulary, saved as safetensors + tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    write_vocab(directory / "vocab.txt")
    words = (directory / "vocab.txt").read_text().split()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    if nan_weights:
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.fill_(float("nan"))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


def make_rows(
    n: int, seed: int = 0, labels: tuple[str, str] = ("positive", "negative")
) -> list[tuple[str, str]]:
    """Keyword-separable sentiment rows: a tiny model can learn them in a few dozen steps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % 2]
        word = rng.choice(POSITIVE if label == labels[0] else NEGATIVE)
        words = rng.sample(FILLER, 3) + [word, word] + rng.sample(FILLER, 2)
        rows.append((" ".join(words), label))
    return rows


def write_csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def sentiment_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "train.csv", make_rows(160))
