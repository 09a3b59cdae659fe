"""Distribution analysis of a dataset: one streaming pass, PNG plots and a self-contained HTML.

Label distribution, character lengths, token lengths per tokenizer (with the ``max_length`` cut
marked), most frequent words per class, duplicate and conflict counts, and the language mix (by
script, see :mod:`loralab.datasets.language`). Plots draw Chinese (and Japanese, Korean) words
with a CJK font when the machine has one (Noto Sans CJK, WenQuanYi, Droid Sans Fallback,
...). Memory grows with the number of distinct texts (one hash each) and the vocabulary, not
with the text itself.
"""

from __future__ import annotations

import base64
import html
import json
import re
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.datasets.duplicates import Duplicate, DuplicateIndex
from loralab.datasets.language import detect_language
from loralab.datasets.validation import TokenCounter

TOKEN_BATCH = 4096
TOP_TOKENS = 15
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[^\W\d_\u3400-\u4dbf\u4e00-\u9fff]{2,}")
# Fonts with CJK glyphs, best first (Debian: fonts-noto-cjk, fonts-wqy-microhei, ...).
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Source Han Sans SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "you",
        "your",
        "not",
        "no",
        "so",
        "if",
        "than",
        "then",
        "there",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "why",
        "how",
        "all",
        "any",
        "some",
        "can",
        "do",
        "does",
        "did",
        "been",
        "being",
        "into",
        "out",
        "up",
        "down",
        "over",
        "very",
        "more",
        "most",
        "such",
        "only",
        "own",
        "same",
        "too",
        "just",
    ]
)


@dataclass
class Profile:
    """Everything measured in one pass over a dataset."""

    name: str
    rows: int = 0
    label_counts: Counter[str] = field(default_factory=Counter)
    char_lengths: array[int] = field(default_factory=lambda: array("I"))
    token_lengths: dict[str, array[int]] = field(default_factory=dict)
    top_tokens: dict[str, Counter[str]] = field(default_factory=dict)
    languages: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    near_duplicates: int = 0
    conflicts: int = 0
    max_length: int = 128

    def summary(self) -> dict[str, Any]:
        """Plain numbers (JSON-ready), also shown in the HTML report."""

        def stats(values: array[int]) -> dict[str, float]:
            if not values:
                return {}
            ordered = sorted(values)
            pick = lambda q: float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])  # noqa: E731
            return {
                "mean": round(sum(ordered) / len(ordered), 2),
                "p50": pick(0.5),
                "p90": pick(0.9),
                "p99": pick(0.99),
                "max": float(ordered[-1]),
            }

        return {
            "name": self.name,
            "rows": self.rows,
            "labels": dict(self.label_counts.most_common()),
            "char_length": stats(self.char_lengths),
            "token_length": {k: stats(v) for k, v in self.token_lengths.items()},
            "truncated": {
                k: sum(1 for n in v if n > self.max_length) for k, v in self.token_lengths.items()
            },
            "max_length": self.max_length,
            "top_tokens": {
                label: counter.most_common(TOP_TOKENS)
                for label, counter in sorted(self.top_tokens.items())
            },
            "languages": dict(self.languages.most_common()),
            "duplicates": self.duplicates,
            "near_duplicates": self.near_duplicates,
            "conflicting_labels": self.conflicts,
        }


def profile_rows(
    rows: Iterable[tuple[str, str]],
    name: str,
    token_counters: dict[str, TokenCounter] | None = None,
    max_length: int = 128,
) -> Profile:
    """Profile (text, label) rows (texts stripped, labels present) in one streaming pass."""
    counters = token_counters or {}
    profile = Profile(name, max_length=max_length)
    profile.token_lengths = {k: array("I") for k in counters}
    seen = DuplicateIndex()
    batch: list[str] = []
    for text, label in rows:
        profile.rows += 1
        profile.label_counts[label] += 1
        profile.char_lengths.append(len(text))
        profile.languages[detect_language(text)] += 1
        words = profile.top_tokens.setdefault(label, Counter())
        words.update(w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS)
        _count_duplicate(seen.add(profile.rows, text, label), profile)
        if counters:
            batch.append(text)
            if len(batch) >= TOKEN_BATCH:
                _count(batch, counters, profile)
                batch = []
    _count(batch, counters, profile)
    return profile


def _count_duplicate(found: Duplicate | None, profile: Profile) -> None:
    if found is None:
        return
    if found.kind == "duplicate":
        profile.duplicates += 1
    elif found.kind == "near_duplicate":
        profile.near_duplicates += 1
    else:
        profile.conflicts += 1


def _count(batch: list[str], counters: dict[str, TokenCounter], profile: Profile) -> None:
    if not batch:
        return
    for name, counter in counters.items():
        profile.token_lengths[name].extend(counter(batch))


# -- plots and report -------------------------------------------------------------------------


CJK_FONT_FILES = (
    "wqy-microhei.ttc",
    "NotoSansCJK-Regular.ttc",
    "wqy-zenhei.ttc",
    "DroidSansFallbackFull.ttf",
)
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


def cjk_font() -> str | None:
    """The family name of an installed font with CJK glyphs (None: the machine has none).

    matplotlib caches its font list once; a CJK font installed after that is added by file.
    """
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in installed), None)
    if found is not None:
        return found
    for folder in FONT_DIRS:
        for file in CJK_FONT_FILES:
            for path in sorted(folder.rglob(file)) if folder.is_dir() else []:
                font_manager.fontManager.addfont(str(path))
                return str(font_manager.FontProperties(fname=str(path)).get_name())
    return None


def _figure(width: float = 7.0, height: float = 3.6, ncols: int = 1) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = cjk_font()
    if font is not None:  # Latin text keeps DejaVu Sans; CJK glyphs come from the fallback
        plt.rcParams["font.family"] = ["DejaVu Sans", font]
    return plt.subplots(1, ncols, figsize=(width, height), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    import warnings

    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # Without a CJK font Chinese words are boxes in the plot; the HTML tables show them.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return path


def _hist(ax: Any, values: array[int], color: str) -> None:
    upper = max(values) if values else 1
    bins = min(60, max(1, upper))
    ax.hist(values, bins=bins, color=color, edgecolor="white", linewidth=0.3)
    ax.set_ylabel("texts")


def write_plots(profile: Profile, out: Path) -> dict[str, Path]:
    """PNG plots of the profile under ``out``; name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}

    fig, ax = _figure()
    labels = [label for label, _ in profile.label_counts.most_common()]
    ax.bar(labels, [profile.label_counts[x] for x in labels], color="#4c72b0")
    ax.set_title("label distribution")
    ax.set_ylabel("rows")
    ax.tick_params(axis="x", rotation=30 if len(labels) > 6 else 0)
    plots["labels"] = _save(fig, out / "label_distribution.png")

    fig, ax = _figure()
    _hist(ax, profile.char_lengths, "#55a868")
    ax.set_title("text length (characters)")
    ax.set_xlabel("characters")
    plots["char_lengths"] = _save(fig, out / "char_lengths.png")

    for name, lengths in profile.token_lengths.items():
        fig, ax = _figure()
        _hist(ax, lengths, "#8172b2")
        ax.axvline(profile.max_length, color="#c44e52", linestyle="--", linewidth=1.5)
        cut = sum(1 for n in lengths if n > profile.max_length)
        share = cut / len(lengths) if lengths else 0.0
        ax.set_title(f"token length ({name}); max_length {profile.max_length}: {share:.1%} cut")
        ax.set_xlabel("tokens (with special tokens)")
        plots[f"tokens_{name}"] = _save(fig, out / f"token_lengths_{_slug(name)}.png")

    classes = sorted(profile.top_tokens)[:8]
    if classes:
        fig, axes = _figure(max(5.0, 3.2 * len(classes)), 4.2, ncols=len(classes))
        import numpy as np

        for ax, label in zip(np.atleast_1d(axes), classes, strict=False):
            top = profile.top_tokens[label].most_common(TOP_TOKENS)[::-1]
            ax.barh([w for w, _ in top], [n for _, n in top], color="#dd8452")
            ax.set_title(f"{label}", fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
        fig.suptitle("most frequent words per class")
        plots["top_tokens"] = _save(fig, out / "top_tokens.png")

    fig, ax = _figure()
    langs = profile.languages.most_common()
    ax.barh([x for x, _ in langs][::-1], [n for _, n in langs][::-1], color="#937860")
    ax.set_title("language mix (by script)")
    ax.set_xlabel("texts")
    plots["languages"] = _save(fig, out / "language_mix.png")
    return plots


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "tokenizer"


def _table(rows: Iterable[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(profile: Profile, plots: dict[str, Path], path: Path) -> Path:
    """One self-contained HTML report (plots embedded as base64 PNG)."""
    s = profile.summary()
    images = "".join(
        f'<figure><img alt="{html.escape(k)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}"></figure>'
        for k, p in plots.items()
    )
    overview = _table(
        [
            ("rows", s["rows"]),
            ("classes", len(s["labels"])),
            ("exact duplicates", s["duplicates"]),
            ("near-exact duplicates", s["near_duplicates"]),
            ("same text, conflicting labels", s["conflicting_labels"]),
            ("max_length", s["max_length"]),
            *((f"truncated ({k})", n) for k, n in s["truncated"].items()),
        ],
        ("measure", "value"),
    )
    labels = _table(
        ((k, n, f"{n / max(1, s['rows']):.1%}") for k, n in s["labels"].items()),
        ("label", "rows", "share"),
    )
    lengths = _table(
        [("characters", *s["char_length"].values())]
        + [(f"tokens: {k}", *v.values()) for k, v in s["token_length"].items()],
        ("length", "mean", "p50", "p90", "p99", "max"),
    )
    languages = _table(s["languages"].items(), ("language (script)", "texts"))
    words = "".join(
        f"<h3>{html.escape(label)}</h3>" + _table(top, ("word", "count"))
        for label, top in s["top_tokens"].items()
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>loralab data: {html.escape(profile.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:3px 8px}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>Dataset analysis: {html.escape(profile.name)}</h1>
<h2>Overview</h2>{overview}<h2>Labels</h2>{labels}<h2>Lengths</h2>{lengths}
<h2>Language mix</h2>{languages}<h2>Plots</h2>{images}
<h2>Most frequent words per class</h2>{words}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def write_report(profile: Profile, out: Path) -> dict[str, Path]:
    """Plots, ``profile.json`` and ``report.html`` under ``out``; name -> path."""
    plots = write_plots(profile, out)
    summary = out / "profile.json"
    summary.write_text(json.dumps(profile.summary(), indent=1, ensure_ascii=False), "utf-8")
    report = write_html(profile, plots, out / "report.html")
    return {**plots, "profile": summary, "html": report}
