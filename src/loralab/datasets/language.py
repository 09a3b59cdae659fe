"""What language a dataset is in, and whether a base model reads it.

The language of a text is judged by its script (Han without kana: Chinese; kana: Japanese;
Hangul: Korean; Cyrillic; Arabic), and Latin-script text is English when it holds an English
function word or no accented letter. No well-kept language identifier ships its model inside a
package small enough to depend on here, so script counting is the identifier; it separates the
languages whose scripts differ, which is what decides whether a tokenizer can read a text.

:func:`check_model_fit` says, before any model loads, when most of the data is in a language the
chosen base model does not read: catalog models by the languages they declare, any other model
(a local folder) by its tokenizer's unknown-token rate on the data.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loralab.training.catalog import CATALOG, CatalogEntry

CHINESE, ENGLISH, OTHER = "Chinese", "English", "other"
LATIN_OTHER = "Latin script (not English)"
_SCRIPTS = (
    ("Japanese", re.compile(r"[\u3040-\u30ff]")),
    ("Korean", re.compile(r"[\uac00-\ud7af]")),
    (CHINESE, re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
    ("Cyrillic script", re.compile(r"[\u0400-\u04ff]")),
    ("Arabic script", re.compile(r"[\u0600-\u06ff]")),
    (ENGLISH, re.compile(r"[A-Za-z\u00c0-\u024f]")),
)
_ACCENTED = re.compile(r"[\u00c0-\u024f]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_ENGLISH_WORDS = frozenset(
    [
        "the",
        "and",
        "is",
        "are",
        "was",
        "were",
        "this",
        "that",
        "with",
        "of",
        "to",
        "it",
        "not",
        "for",
        "you",
        "your",
        "very",
        "but",
        "have",
        "has",
        "be",
        "been",
        "my",
        "me",
        "we",
        "they",
        "he",
        "she",
        "its",
        "at",
        "on",
        "in",
        "an",
        "a",
        "no",
        "so",
        "too",
        "just",
        "really",
    ]
)
MOST = 0.5  # "most of the data": more than this share of the texts
UNKNOWN_TOKEN_LIMIT = 0.05  # a tokenizer that maps more of the data to [UNK] does not read it
NO_OFFLINE_MODEL = {
    CHINESE: "no package ships a Chinese-reading model, so it loads from a hub or the local "
    "cache, or from a local copy given as base_model; see the README, Chinese data",
}


def detect_language(text: str) -> str:
    """The language of one text by its dominant script (kana wins over Han: Japanese mixes
    both); Latin script is English unless it has accented letters and no English word."""
    counts = [(len(pattern.findall(text)), name) for name, pattern in _SCRIPTS]
    if counts[0][0]:
        return counts[0][1]
    best = max(counts[1:])
    if not best[0]:
        return OTHER
    if best[1] == ENGLISH and _ACCENTED.search(text):
        words = {w.lower() for w in _LATIN_WORD.findall(text)}
        return ENGLISH if words & _ENGLISH_WORDS else LATIN_OTHER
    return best[1]


@dataclass(frozen=True)
class LanguageProfile:
    """Texts per language (by script) of a dataset; the dominant one names its language."""

    counts: dict[str, int]

    @classmethod
    def of(cls, texts: Iterable[str]) -> LanguageProfile:
        return cls(dict(Counter(detect_language(t) for t in texts).most_common()))

    @classmethod
    def from_dict(cls, data: Any) -> LanguageProfile:
        """From a stored report's ``languages`` (anything else: an empty profile)."""
        if not isinstance(data, dict):
            return cls({})
        return cls({str(k): int(v) for k, v in data.items() if isinstance(v, int)})

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def dominant(self) -> str | None:
        """The language of most texts that have one (None: no text has letters)."""
        named = [(n, lang) for lang, n in self.counts.items() if lang != OTHER]
        return max(named)[1] if named else None

    def share(self, language: str) -> float:
        return self.counts.get(language, 0) / self.total if self.total else 0.0

    def shares(self) -> dict[str, float]:
        return {lang: round(self.share(lang), 4) for lang in self.counts}


def data_language(profile: LanguageProfile) -> str:
    """What a model card says the data is in: the dominant language, or 'unknown'."""
    return profile.dominant or "unknown"


def model_languages(name: str) -> tuple[str, ...] | None:
    """The languages a catalog model reads; None for any other model (judge it by its vocab)."""
    entry = CATALOG.get(name)
    return entry.languages if entry is not None else None


def fitting_models(language: str) -> list[CatalogEntry]:
    """Catalog models that read ``language``, offline (packaged) ones first."""
    found = [e for e in CATALOG.values() if language in e.languages]
    return sorted(found, key=lambda e: (not e.packaged, e.name))


def suggestion(language: str) -> str:
    """Which base model to use for data in ``language``, in a clause."""
    found = fitting_models(language)
    if not found:
        return (
            f"no catalog model reads {language}: pass the local folder of a model that does "
            "as base_model"
        )
    best = found[0]
    if best.packaged:
        return f"use base_model {best.name} (works offline)"
    why = NO_OFFLINE_MODEL.get(language, "it loads from a hub, the local cache or a local copy")
    return f"use base_model {best.name} ({why})"


def check_model_fit(
    profile: LanguageProfile, base_model: str, unknown_rate: float | None = None
) -> str | None:
    """One sentence when most of the data is in a language ``base_model`` does not read
    (naming a model that fits); None when it reads it or nothing can be said.

    Catalog models are judged by their declared languages; other models by ``unknown_rate``,
    the share of the data's tokens their tokenizer maps to the unknown token.
    """
    language = profile.dominant
    if language is None or profile.share(language) <= MOST:
        return None
    share = f"{profile.share(language):.0%}"
    declared = model_languages(base_model)
    if declared is not None:
        if language in declared:
            return None
        reads = ", ".join(declared)
        return (
            f"the data is {share} {language} but base model {base_model} reads {reads}: "
            f"{suggestion(language)}."
        )
    if unknown_rate is None or unknown_rate <= UNKNOWN_TOKEN_LIMIT:
        return None
    return (
        f"the data is {share} {language} but the tokenizer of base model {base_model} knows "
        f"too little of it ({unknown_rate:.0%} unknown tokens): {suggestion(language)}."
    )
