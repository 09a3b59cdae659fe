"""Labelled texts from CSV, TSV, JSONL and Parquet files; label maps; the validation split."""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from loralab.training.reader import IssueLog, RecordReader, describe

MAX_ERRORS_SHOWN = 5


class DataError(ValueError):
    """A dataset file is missing, unreadable, or holds rows that cannot be trained on."""


@dataclass(frozen=True)
class LabelledTexts:
    """Texts and their label names, in file order, plus where they came from."""

    texts: list[str]
    labels: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def read_labelled_texts(path: str | Path, text_column: str, label_column: str) -> LabelledTexts:
    """Read a labelled dataset through the one reader that validation uses.

    Texts and labels are stripped. Every unreadable row, empty text or empty label is an error;
    the first few (by row) are named in one :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    issues = IssueLog(max_examples=MAX_ERRORS_SHOWN)
    reader = RecordReader(
        path, text_column, label_column, issues, max_rows=sys.maxsize, max_bytes=sys.maxsize
    )
    texts: list[str] = []
    labels: list[str] = []
    for record in reader:
        text = (record.text or "").strip()
        label = (record.label or "").strip()
        if not text:
            issues.add("error", "empty_text", "empty text", row=record.row)
        elif not label:
            issues.add("error", "empty_label", "empty label", row=record.row)
        elif not issues.has_errors():  # past the first error, only count the rest
            texts.append(text)
            labels.append(label)
    if issues.has_errors():
        raise DataError(f"{path}: {_summarise(issues)}")
    return LabelledTexts(texts, labels, str(path))


def _summarise(issues: IssueLog) -> str:
    """The first errors by row (file-level ones alone when there are any), and how many more."""
    errors = [i for i in issues.issues if i.severity == "error"]
    file_level = [i for i in errors if i.row is None and i.line is None]
    if file_level:
        return "; ".join(i.message for i in file_level)
    errors.sort(key=lambda i: (i.row or 0, i.line or 0))
    shown = errors[:MAX_ERRORS_SHOWN]
    total = sum(n for (severity, _), n in issues.counts.items() if severity == "error")
    more = f" (and {total - len(shown)} more)" if total > len(shown) else ""
    return "; ".join(describe(replace(i, file=None)) for i in shown) + more


def build_label_list(labels: list[str], declared: tuple[str, ...] | None) -> list[str]:
    """Labels in id order: the declared ones, or integers numerically, or strings alphabetically."""
    if declared is not None:
        return list(declared)
    found = set(labels)
    if all(_is_int(v) for v in found):
        return sorted(found, key=int)
    return sorted(found)


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def encode_labels(data: LabelledTexts, label_list: list[str]) -> list[int]:
    """Map label names to ids; a label outside the list is an error naming its row."""
    index = {name: i for i, name in enumerate(label_list)}
    ids: list[int] = []
    unknown: list[str] = []
    for row, label in enumerate(data.labels, start=1):
        if label in index:
            ids.append(index[label])
        else:
            unknown.append(f"row {row}: unknown label {label!r}")
    if unknown:
        shown = "; ".join(unknown[:MAX_ERRORS_SHOWN])
        raise DataError(f"{data.source}: {shown} (labels: {', '.join(label_list)})")
    return ids


def stratified_split(labels: list[int], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded, stratified train/validation indices.

    Each label gives ``share`` of its rows (rounded, at least one) to validation and keeps at
    least one for training, so rare labels are never missing from either side. Every label
    needs two or more rows.
    """
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    rare = sorted(label for label, rows in by_label.items() if len(rows) < 2)
    if rare:
        raise DataError(
            f"label id(s) {', '.join(map(str, rare))} have a single row: a stratified validation "
            "split needs at least two per label (add rows or give a validation_file)"
        )
    rng = random.Random(seed)  # noqa: S311 - a reproducible split, not a secret
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        n_val = min(len(rows) - 1, max(1, round(len(rows) * share)))
        val_idx.extend(rows[:n_val])
        train_idx.extend(rows[n_val:])
    return sorted(train_idx), sorted(val_idx)


def fingerprint(*datasets: LabelledTexts) -> str:
    """A short content hash of the texts and labels (order-sensitive), for tags and lineage."""
    digest = hashlib.sha256()
    for data in datasets:
        for text, label in zip(data.texts, data.labels, strict=True):
            digest.update(text.encode("utf-8"))
            digest.update(b"\t")
            digest.update(label.encode("utf-8"))
            digest.update(b"\n")
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
