"""Shared fixtures: a tiny randomly initialised BERT built from a config, and small datasets."""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Iterator
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
    # request limits are counted in the shared Redis: each test session counts on its own
    mp.setenv("LORALAB_LIMITS__PREFIX", f"loralab:test:{uuid.uuid4().hex}:")
    yield
    mp.undo()


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(path: Path, words: list[str] | None = None) -> list[str]:
    """The special tokens and ``words`` (the sentiment words by default), one a line; returns
    the vocabulary in id order."""
    vocab = SPECIALS + (words if words is not None else POSITIVE + NEGATIVE + FILLER)
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return vocab


def build_tiny_bert(
    directory: Path,
    nan_weights: bool = False,
    words: list[str] | None = None,
    max_positions: int = 64,
) -> Path:
    """A 2-layer, 32-wide BERT saved as safetensors + tokenizer; its vocabulary is the special
    tokens and ``words`` (by default the 22 sentiment words: 27 tokens)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(directory / "vocab.txt", words)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
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


# --- databases: a migrated SQLite file per test, a throwaway PostgreSQL database per session ---

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating per test is slower)."""
    from loralab.infra.migrate import upgrade_database

    path = tmp_path_factory.mktemp("db-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture()
def sqlite_db_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """The URL of a fresh SQLite database at the newest migration, private to this test."""
    import shutil

    path = tmp_path / "loralab.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


def _pg_admin() -> object:
    """An autocommit connection to the local PostgreSQL server; skips when none answers."""
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"no PostgreSQL server answers on 127.0.0.1:5432 as postgres: {err}")


def _pg_create(admin: object, template: str | None = None) -> str:
    """Create an empty (or template-copied) database with a random name; return its name."""
    import secrets

    name = f"loralab_test_{secrets.token_hex(6)}"
    clause = f" TEMPLATE {template}" if template else ""
    admin.execute(f"CREATE DATABASE {name}{clause}")  # type: ignore[attr-defined]
    return name


def _pg_drop(admin: object, name: str) -> None:
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_db_url() -> Iterator[str]:
    """A throwaway PostgreSQL database at the newest migration, shared by the test session
    (use unique names in tests); dropped at the end. Skips only when no server answers."""
    from loralab.infra.migrate import upgrade_database

    admin = _pg_admin()
    name = _pg_create(admin)
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade_database(url)
        yield url
    finally:
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template of private test databases."""
    from loralab.infra.migrate import upgrade_database

    admin = _pg_admin()
    name = _pg_create(admin)
    try:
        upgrade_database(f"postgresql://postgres@127.0.0.1:5432/{name}")
        yield name
    finally:
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture()
def pg_private_db_url(_pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database private to one test (for tests that break things on
    purpose, such as tampering with the audit log); dropped afterwards."""
    admin = _pg_admin()
    name = _pg_create(admin, template=_pg_template)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture()
def pg_empty_db_url() -> Iterator[str]:
    """An empty (unmigrated) PostgreSQL database private to one test; dropped afterwards."""
    admin = _pg_admin()
    name = _pg_create(admin)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]
