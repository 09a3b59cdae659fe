"""Tokenizers load once per model folder and its tokenizer files; the unknown-token rate of a
dataset version is measured once per version and tokenizer (a job submit asks for it)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import FILLER, build_tiny_bert

from loralab.datasets import tokens
from loralab.datasets.tokens import token_meter, unknown_rate


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    tokens.clear_caches()
    yield
    tokens.clear_caches()


@pytest.fixture()
def model(tiny_bert: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model that a test may rebuild in place."""
    return Path(shutil.copytree(tiny_bert, tmp_path / "model"))


def canonical(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts))
    return path


def test_one_tokenizer_load_serves_every_meter_of_a_model(model: Path) -> None:
    first, second = token_meter(str(model)), token_meter(str(model))
    assert first.lengths(["good movie"]) == second.lengths(["good movie"]) == [4]
    assert tokens._load.cache_info().misses == 1


def test_a_replaced_tokenizer_is_loaded_again(model: Path) -> None:
    assert token_meter(str(model)).unknowns(["good movie"]) == [0]
    build_tiny_bert(model, words=FILLER)  # "good" leaves the vocabulary
    assert token_meter(str(model)).unknowns(["good movie"]) == [1]


def test_the_unknown_rate_of_a_version_is_measured_once(model: Path, tmp_path: Path) -> None:
    data = canonical(tmp_path / "v1.jsonl", ["good movie", "zzz movie"])
    rate = unknown_rate(str(model), data, "f" * 64, rows=2000)
    assert rate == pytest.approx(1 / 8)  # 2 x [CLS] w w [SEP], one [UNK]
    data.unlink()  # a version is immutable: its rate is not read again
    assert unknown_rate(str(model), data, "f" * 64, rows=2000) == rate
    with pytest.raises(FileNotFoundError):  # another version (fingerprint) is read
        unknown_rate(str(model), data, "e" * 64, rows=2000)


def test_the_unknown_rate_follows_a_replaced_tokenizer(model: Path, tmp_path: Path) -> None:
    data = canonical(tmp_path / "v1.jsonl", ["good movie"])
    assert unknown_rate(str(model), data, "f" * 64, rows=10) == 0
    build_tiny_bert(model, words=FILLER)
    assert unknown_rate(str(model), data, "f" * 64, rows=10) == pytest.approx(1 / 4)


def test_only_the_first_rows_are_measured(model: Path, tmp_path: Path) -> None:
    data = canonical(tmp_path / "v1.jsonl", ["good movie", "zzz zzz"])
    assert unknown_rate(str(model), data, "f" * 64, rows=1) == 0
    assert unknown_rate(str(model), data, "f" * 64, rows=2) == pytest.approx(2 / 8)
