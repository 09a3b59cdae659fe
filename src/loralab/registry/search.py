"""In-memory search and similarity over cards: filters, sort, pagination, a numpy matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loralab.errors import InvalidInput
from loralab.registry.cards import EMBEDDING_DIM, ModelCard, Stage, parse_stage

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
SORT_FIELDS = ("created_at", "name", "version", "stage")


@dataclass(frozen=True)
class SearchQuery:
    """Every filter optional. ``tags``: key=value must match, a bare key must exist.

    ``min_metrics``: metric name -> lowest accepted value (cards without the metric drop out).
    ``sort``: created_at | name | version | stage | metric:<name>; ``descending`` flips it.
    ``limit``: 1..100 (anything else is an error, not clamped); ``offset`` >= 0.
    """

    name: str | None = None
    base_model: str | None = None
    language: str | None = None
    task: str | None = None
    stage: str | None = None
    tags: dict[str, str | None] = field(default_factory=dict)
    min_metrics: dict[str, float] = field(default_factory=dict)
    sort: str = "created_at"
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass(frozen=True)
class Page:
    items: list[ModelCard]
    total: int
    offset: int
    limit: int


def check_limit(limit: int, offset: int = 0) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset must be 0 or more, got {offset!r}")


def _sort_key(sort: str) -> Any:
    if sort.startswith("metric:") and len(sort) > len("metric:"):
        metric = sort[len("metric:") :]
        return lambda c: c.metrics.get(metric, -math.inf)
    if sort == "version":
        return lambda c: (c.name, int(c.version))
    if sort == "stage":
        return lambda c: c.stage.value
    if sort in SORT_FIELDS:
        return lambda c: getattr(c, sort)
    raise InvalidInput(
        f"unknown sort {sort!r}: use one of {', '.join(SORT_FIELDS)} or metric:<name>"
    )


def _eq(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


class CardIndex:
    """All cards in memory plus a (n, 384) matrix of their unit embeddings."""

    def __init__(self, cards: list[ModelCard]) -> None:
        self.cards = cards
        if cards:
            matrix = np.asarray([c.embedding for c in cards], dtype=np.float32)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            self.matrix = matrix / norms
        else:
            self.matrix = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self.by_ref = {c.ref: i for i, c in enumerate(cards)}

    def _match(self, card: ModelCard, q: SearchQuery, stage: Stage | None) -> bool:
        if q.name is not None and card.name != q.name:
            return False
        if q.base_model is not None and not _eq(card.base_model, q.base_model):
            return False
        if q.language is not None and not _eq(card.language, q.language):
            return False
        if q.task is not None and not _eq(card.task, q.task):
            return False
        if stage is not None and card.stage is not stage:
            return False
        for key, value in q.tags.items():
            if key not in card.tags or (value is not None and card.tags[key] != value):
                return False
        for metric, low in q.min_metrics.items():
            if card.metrics.get(metric, -math.inf) < low:
                return False
        return True

    def search(self, q: SearchQuery) -> Page:
        check_limit(q.limit, q.offset)
        key = _sort_key(q.sort)
        stage = parse_stage(q.stage) if q.stage is not None else None
        for metric, low in q.min_metrics.items():
            if not math.isfinite(low):
                raise InvalidInput(f"metric threshold {metric} must be a finite number")
        found = [c for c in self.cards if self._match(c, q, stage)]
        found.sort(key=key, reverse=q.descending)
        return Page(found[q.offset : q.offset + q.limit], len(found), q.offset, q.limit)

    def scores(self, vector: np.ndarray) -> np.ndarray:
        """Cosine of every card with a unit vector.

        Computed with torch, not numpy: an OpenBLAS matrix-vector product leaves OpenBLAS threads
        spinning, which slowed the next query embedding (torch) about threefold on 2 cores.
        """
        import torch

        matrix = torch.from_numpy(self.matrix)
        query = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
        return (matrix @ query).numpy()

    def top_similar(
        self, vector: np.ndarray, k: int, exclude: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """The k best (card index, cosine) pairs, best first, ties by position."""
        if not self.cards:
            return []
        scores = self.scores(vector)
        skip = exclude or set()
        want = min(len(scores), k + len(skip))
        if want < len(scores):
            idx = np.argpartition(-scores, want - 1)[:want]
        else:
            idx = np.arange(len(scores))
        ranked = sorted(idx.tolist(), key=lambda i: (-scores[i], i))
        return [(i, float(scores[i])) for i in ranked if i not in skip][:k]
