"""Token ids with a base model's tokenizer, loaded once per tokenizer, and the unknown-token
rate of a stored dataset version, measured once per version and tokenizer.

Loading a tokenizer costs milliseconds (``tokenizer.json`` parsed by the tokenizers library) to
seconds (transformers' classes), and every job submitted for a model outside the catalog asks
for the unknown-token rate of its data (:func:`loralab.datasets.service.language_fit`). Both
are kept in small LRUs keyed by the model folder and the size and modification time of its
tokenizer files, so a folder whose tokenizer is replaced is loaded and measured again; a
dataset version is immutable (its key is its fingerprint).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from loralab.datasets.versioning import read_canonical

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
)  # fmt: skip
CACHED_TOKENIZERS = 8  # base models whose tokenizer stays loaded
CACHED_RATES = 256  # (dataset version, tokenizer) pairs whose unknown-token rate is kept

Stamp = tuple[tuple[str, int, int], ...]  # (file name, mtime ns, size) of tokenizer files


class TokenMeter:
    """Token ids of a batch with a base model's tokenizer: lengths and unknown tokens.

    The two are asked for the same batch in turn; the batch is encoded once. One meter per
    caller (it remembers its last batch); the tokenizer under it is shared.
    """

    def __init__(
        self, encode: Callable[[list[str]], list[list[int]]], unknown_id: int | None
    ) -> None:
        self._encode = encode
        self.unknown_id = unknown_id
        self._last: tuple[list[str], list[list[int]]] | None = None

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if self._last is None or self._last[0] is not texts:
            self._last = (texts, self._encode(texts))
        return self._last[1]

    def lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text, special tokens included."""
        return [len(ids) for ids in self._ids(texts)]

    def unknowns(self, texts: list[str]) -> list[int]:
        """Unknown tokens per text (0 for byte-level tokenizers, which have none)."""
        if self.unknown_id is None:
            return [0] * len(texts)
        return [ids.count(self.unknown_id) for ids in self._ids(texts)]


@dataclass(frozen=True)
class _Tokenizer:
    """A loaded tokenizer: how to encode a batch, and its unknown token's id."""

    encode: Callable[[list[str]], list[list[int]]]
    unknown_id: int | None


def tokenizer_stamp(folder: Path) -> Stamp:
    """What identifies the tokenizer files of a model folder: name, mtime and size of each
    (one listing of the folder, a stat per tokenizer file; none for a folder that is not)."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in TOKENIZER_FILES:
                    stat = entry.stat()
                    found.append((entry.name, stat.st_mtime_ns, stat.st_size))
    except OSError:
        return ()
    return tuple(sorted(found))


@lru_cache(maxsize=CACHED_TOKENIZERS)
def _load(base_model: str, source: str, stamp: Stamp) -> _Tokenizer:
    """The tokenizer of ``base_model`` (folder ``source``, files ``stamp``: the cache key)."""
    tokenizer_json = Path(source) / "tokenizer.json"
    if tokenizer_json.is_file():
        # The tokenizers library alone: no transformers/torch import (seconds saved). Its
        # encode takes the tokenizer read-only, so threads share it.
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(tokenizer_json))
        backend.no_truncation()  # some tokenizer.json files ship with truncation or padding on
        backend.no_padding()
        unk = getattr(backend.model, "unk_token", None)
        return _Tokenizer(
            lambda texts: [e.ids for e in backend.encode_batch(texts)],
            backend.token_to_id(unk) if isinstance(unk, str) else None,
        )
    from loralab.training.catalog import resolve_model
    from loralab.training.model import load_tokenizer

    tokenizer: Any = load_tokenizer(resolve_model(base_model))
    turns = threading.Lock()  # transformers sets truncation on the shared backend per call

    def encode(texts: list[str]) -> list[list[int]]:
        with turns:
            return list(tokenizer(texts, truncation=False, verbose=False)["input_ids"])

    return _Tokenizer(encode, tokenizer.unk_token_id)


def token_meter(base_model: str) -> TokenMeter:
    """A :class:`TokenMeter` with the base model's tokenizer (fast tokenizers in Rust), loaded
    once while its files stay the same."""
    from loralab.training.catalog import resolve_model

    source = resolve_model(base_model).source
    tokenizer = _load(base_model, source, tokenizer_stamp(Path(source)))
    return TokenMeter(tokenizer.encode, tokenizer.unknown_id)


def unknown_rate(base_model: str, data: Path, fingerprint: str, rows: int) -> float | None:
    """Unknown tokens per token of the first ``rows`` texts of a stored canonical copy
    (``data``, whose content ``fingerprint`` names); None for no tokens. Measured once per
    version, row count and tokenizer files."""
    from loralab.training.catalog import resolve_model

    source = resolve_model(base_model).source
    return _rate(base_model, source, tokenizer_stamp(Path(source)), str(data), fingerprint, rows)


@lru_cache(maxsize=CACHED_RATES)
def _rate(
    base_model: str, source: str, stamp: Stamp, data: str, fingerprint: str, rows: int
) -> float | None:
    tokenizer = _load(base_model, source, stamp)
    texts = [text for text, _ in islice(read_canonical(Path(data)), rows)]
    meter = TokenMeter(tokenizer.encode, tokenizer.unknown_id)
    tokens, unknown = sum(meter.lengths(texts)), sum(meter.unknowns(texts))
    return unknown / tokens if tokens else None


def clear_caches() -> None:
    """Forget every loaded tokenizer and measured rate (tests; memory)."""
    _load.cache_clear()
    _rate.cache_clear()
