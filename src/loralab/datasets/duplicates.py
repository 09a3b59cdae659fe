"""Exact and near-exact duplicate texts, and the same text with conflicting labels.

The one definition used by validation (warnings with rows) and analysis (counts). Texts are
remembered by hash, so memory grows with the number of distinct texts, not their length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

_NON_WORD = re.compile(r"[\W_]+")

DuplicateKind = Literal["duplicate", "near_duplicate", "conflicting_labels"]


def normalise_near(text: str) -> str:
    """Key for near-exact duplicates: case, punctuation and spacing ignored."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


@dataclass(frozen=True)
class Duplicate:
    """A text met before: how (``kind``), and the first row with it and that row's label."""

    kind: DuplicateKind
    row: int
    label: str


@dataclass
class DuplicateIndex:
    """Texts seen so far (stripped), each with the first row and label that had it."""

    exact: dict[int, tuple[int, str]] = field(default_factory=dict)
    near: dict[int, tuple[int, str]] = field(default_factory=dict)

    def add(self, row: int, text: str, label: str) -> Duplicate | None:
        """Remember a row; the earlier row it repeats, if any.

        The same text is a ``duplicate`` (same label) or ``conflicting_labels``; a new text
        equal to an earlier one but for case, punctuation and spacing is a ``near_duplicate``.
        """
        first = self.exact.get(hash(text))
        if first is not None:
            kind: DuplicateKind = "duplicate" if first[1] == label else "conflicting_labels"
            return Duplicate(kind, *first)
        self.exact[hash(text)] = (row, label)
        near_key = hash(normalise_near(text))
        near = self.near.get(near_key)
        if near is not None:
            return Duplicate("near_duplicate", *near)
        self.near[near_key] = (row, label)
        return None

    def find(self, text: str) -> Duplicate | None:
        """The row a text (stripped) repeats, exactly or nearly, without remembering it."""
        first = self.exact.get(hash(text))
        if first is not None:
            return Duplicate("duplicate", *first)
        near = self.near.get(hash(normalise_near(text)))
        return Duplicate("near_duplicate", *near) if near is not None else None
