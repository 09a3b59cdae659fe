"""Reading labelled text from CSV, TSV, JSONL and Parquet; label maps; the validation split."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SUPPORTED_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
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


def _read_frame(path: Path) -> pd.DataFrame:
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r} (use .csv, .tsv, .jsonl or .parquet)"
        )
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "jsonl":
            return _read_jsonl(path)
        with warnings.catch_warnings():
            # A first row with more fields than the header (an unquoted comma) must be an
            # error, not silently shift the columns (pandas' implicit index) or drop a field.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                path,
                sep="\t" if kind == "tsv" else ",",
                # TSV has no quoting convention: a quote is part of the text (SST-2 has many).
                quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL,
                dtype=str,
                keep_default_na=False,  # the text "NA" or "null" is text, not a missing value
                encoding="utf-8-sig",  # tolerate a byte-order mark
                on_bad_lines="error",
                index_col=False,
            )
    except DataError:
        raise
    except pd.errors.ParserWarning:
        raise DataError(
            f"{path}: row 1 has more fields than the header (quote texts that hold the separator)"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8 ({_first_non_utf8_line(path)})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise DataError(f"{path}: cannot be parsed: {str(err).strip()}") from None


def _first_non_utf8_line(path: Path) -> str:
    # The decoder's own offset is relative to a read buffer, not to the file: find the line.
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return f"line {line}"
    return "invalid bytes"


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: the file is empty")
    return pd.DataFrame(rows)


def _cell_to_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_labelled_texts(path: str | Path, text_column: str, label_column: str) -> LabelledTexts:
    """Read a labelled dataset. Texts are stripped; empty texts or labels are errors by row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    frame = _read_frame(path)
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{path}: column(s) {', '.join(missing)} not found (columns: {found})")
    texts: list[str] = []
    labels: list[str] = []
    problems: list[str] = []
    pairs = zip(frame[text_column], frame[label_column], strict=True)
    for row, (text, label) in enumerate(pairs, start=1):
        text_str = _cell_to_text(text)
        label_str = _cell_to_text(label)
        if text_str is None or not text_str.strip():
            problems.append(f"row {row}: empty text")
        elif label_str is None or not label_str.strip():
            problems.append(f"row {row}: empty label")
        else:
            texts.append(text_str.strip())
            labels.append(label_str.strip())
    if problems:
        shown = "; ".join(problems[:MAX_ERRORS_SHOWN])
        more = f" (and {len(problems) - MAX_ERRORS_SHOWN} more)" if len(problems) > 5 else ""
        raise DataError(f"{path}: {shown}{more}")
    if not texts:
        raise DataError(f"{path}: no rows")
    return LabelledTexts(texts, labels, str(path))


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
