"""Dataset validation: every problem of a training (and validation) file, row by row.

:func:`validate_files` never raises for anything in the data: whatever the bytes, it returns a
:class:`ValidationReport` whose errors block training and whose warnings do not.

Errors: missing/unreadable file, invalid UTF-8, NUL bytes, unparseable rows (broken quoting,
truncated JSON, wrong field count), missing text/label column, empty text, missing label or one
outside the declared set, a single class, more rows or bytes than the limits.
Warnings: leading/trailing whitespace, exact and near-exact duplicates, the same text with
conflicting labels, class imbalance, train/validation overlap, texts over ``max_length`` tokens
(with the ``max_length`` that would keep 99 % of them), a tokenizer that maps more than 5 % of the
tokens to its unknown token.

The report also holds the language profile of the training file (texts per language, see
:mod:`loralab.datasets.language`) and, per file, the unknown-token rate of the tokenizer.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.datasets.duplicates import DuplicateIndex
from loralab.datasets.language import (
    CHINESE,
    UNKNOWN_TOKEN_LIMIT,
    LanguageProfile,
    data_language,
    detect_language,
)
from loralab.training.reader import Issue, IssueLog, Record, RecordReader, describe

log = logging.getLogger("loralab.datasets")

TokenCounter = Callable[[list[str]], list[int]]
"""Token counts (special tokens included) of a batch of texts, for the truncation rate."""
UnknownCounter = Callable[[list[str]], list[int]]
"""Unknown tokens of each text of a batch (called with the batch just given to the counter)."""

TOKEN_BATCH = 4096
EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2


@dataclass(frozen=True)
class ValidationOptions:
    """What the data should look like: columns, declared labels, tokens kept per text."""

    text_column: str = "text"
    label_column: str = "label"
    labels: tuple[str, ...] | None = None
    max_length: int = 128


@dataclass(frozen=True)
class ValidationLimits:
    """Limits and thresholds (from ``DatasetSettings``)."""

    max_rows: int = 5_000_000
    max_bytes: int = 2_000_000_000
    imbalance_ratio: float = 10.0
    truncation_warn_share: float = 0.01
    max_examples: int = 20


@dataclass
class FileStats:
    """Counts for one validated file."""

    name: str
    rows: int = 0
    valid_rows: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    tokenized: int = 0
    truncated: int = 0
    languages: Counter[str] = field(default_factory=Counter)
    tokens: int = 0  # tokens of the texts whose unknown tokens were counted
    unknown_tokens: int = 0
    lengths: array[int] = field(default_factory=lambda: array("I"), repr=False)

    @property
    def truncation_rate(self) -> float | None:
        return self.truncated / self.tokenized if self.tokenized else None

    @property
    def unknown_token_rate(self) -> float | None:
        """Share of the tokens that the tokenizer maps to its unknown token."""
        return self.unknown_tokens / self.tokens if self.tokens else None

    @property
    def language_profile(self) -> LanguageProfile:
        return LanguageProfile(dict(self.languages.most_common()))

    def length_for(self, share: float = 0.99) -> int | None:
        """The max_length that keeps ``share`` of the texts whole (None: not measured)."""
        if not self.lengths:
            return None
        ordered = sorted(self.lengths)
        return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": self.rows,
            "valid_rows": self.valid_rows,
            "label_counts": self.label_counts,
            "tokenized": self.tokenized,
            "truncated": self.truncated,
            "truncation_rate": self.truncation_rate,
            "languages": dict(self.languages.most_common()),
            "unknown_tokens": self.unknown_tokens,
            "unknown_token_rate": self.unknown_token_rate,
        }


@dataclass
class ValidationReport:
    """Errors (block training) and warnings (do not), with rows, lines and reasons."""

    files: list[FileStats]
    issues: list[Issue]
    counts: dict[str, int]  # "error:code" / "warning:code" -> every occurrence
    max_length: int
    tokenizer: str | None = None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def error_count(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith("error:"))

    @property
    def warning_count(self) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith("warning:"))

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def status(self) -> str:
        return "errors" if self.error_count else "warnings" if self.warning_count else "ok"

    @property
    def exit_code(self) -> int:
        """0: clean; 1: warnings only; 2: errors."""
        return EXIT_ERRORS if self.error_count else EXIT_WARNINGS if self.warning_count else EXIT_OK

    @property
    def languages(self) -> LanguageProfile:
        """The language profile of the training file's valid rows."""
        return self.files[0].language_profile if self.files else LanguageProfile({})

    @property
    def unknown_token_rate(self) -> float | None:
        """Unknown tokens over all tokens of every file (None: not measured)."""
        tokens = sum(f.tokens for f in self.files)
        return sum(f.unknown_tokens for f in self.files) / tokens if tokens else None

    def summary(self, limit: int = 5) -> str:
        """The first few errors on one line, for an exception message."""
        shown = [describe(i) for i in self.errors[:limit]]
        more = self.error_count - len(shown)
        return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "errors": self.error_count,
            "warnings": self.warning_count,
            "counts": self.counts,
            "max_length": self.max_length,
            "tokenizer": self.tokenizer,
            "language": data_language(self.languages),
            "languages": self.languages.counts,
            "unknown_token_rate": self.unknown_token_rate,
            "files": [f.to_dict() for f in self.files],
            "issues": [i.to_dict() for i in self.issues],
        }


class _FileCheck:
    """Row-level checks of one file, streaming."""

    def __init__(
        self,
        name: str,
        options: ValidationOptions,
        limits: ValidationLimits,
        issues: IssueLog,
        counter: TokenCounter | None,
        unknowns: UnknownCounter | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.limits = limits
        self.issues = issues
        self.counter = counter
        self.unknowns = unknowns
        self.stats = FileStats(name)
        self.seen = DuplicateIndex()
        self.labels: Counter[str] = Counter()  # labels of valid rows
        self.found: Counter[str] = Counter()  # every non-empty label, declared or not
        self.declared = set(options.labels) if options.labels else None
        self._batch: list[tuple[int, str]] = []

    def warn(self, code: str, message: str, record: Record | None = None) -> None:
        row, line = (record.row, record.line) if record else (None, None)
        self.issues.add("warning", code, message, row=row, line=line, file=self.name)

    def error(self, code: str, message: str, record: Record | None = None) -> None:
        row, line = (record.row, record.line) if record else (None, None)
        self.issues.add("error", code, message, row=row, line=line, file=self.name)

    def check(self, record: Record) -> None:
        self.stats.rows = record.row
        text, label = record.text, record.label
        if text is None:
            self.error("text_missing", "text is missing or null", record)
        elif not text.strip():
            self.error("empty_text", "empty or whitespace-only text", record)
        elif text != text.strip():
            self.warn("whitespace", "leading or trailing whitespace in the text", record)
        if label is None:
            self.error("label_missing", "label is missing or null", record)
            return
        label = label.strip()
        if not label:
            self.error("label_missing", "empty label", record)
            return
        self.found[label] += 1
        if self.declared is not None and label not in self.declared:
            allowed = ", ".join(self.options.labels or ())
            self.error("label_unknown", f"unknown label {label!r} (labels: {allowed})", record)
            return
        if text is None or not text.strip():
            return
        self.stats.valid_rows += 1
        self.stats.languages[detect_language(text)] += 1
        self.labels[label] += 1
        self._check_duplicate(record, text.strip(), label)
        if self.counter is not None:
            self._batch.append((record.row, text.strip()))
            if len(self._batch) >= TOKEN_BATCH:
                self._count_tokens()

    def _check_duplicate(self, record: Record, text: str, label: str) -> None:
        found = self.seen.add(record.row, text, label)
        if found is None:
            return
        row = found.row
        message = {
            "duplicate": f"same text as row {row}",
            "near_duplicate": f"nearly the same text as row {row}",
            "conflicting_labels": f"same text as row {row} but label {label!r} "
            f"(row {row}: {found.label!r})",
        }[found.kind]
        self.warn(found.kind, message, record)

    def _count_tokens(self) -> None:
        batch, self._batch = self._batch, []
        if not batch or self.counter is None:
            return
        try:
            counts = self.counter([text for _, text in batch])
        except Exception as err:  # noqa: BLE001 - a tokenizer failure must not break validation
            self.warn("tokenizer_failed", f"truncation rate not measured ({err})")
            self.counter = None
            return
        self._count_unknown([text for _, text in batch], counts)
        limit = self.options.max_length
        self.stats.lengths.extend(counts)
        for (row, _), n in zip(batch, counts, strict=True):
            self.stats.tokenized += 1
            if n > limit:
                self.stats.truncated += 1
                self.issues.add(
                    "warning",
                    "truncated",
                    f"{n} tokens, more than max_length {limit}",
                    row=row,
                    file=self.name,
                )

    def _count_unknown(self, texts: list[str], counts: list[int]) -> None:
        """Unknown tokens of a batch the counter has just measured (texts as given to it)."""
        if self.unknowns is None:
            return
        try:
            unknown = self.unknowns(texts)
        except Exception as err:  # noqa: BLE001 - like the counter: a report, never a crash
            self.warn("tokenizer_failed", f"unknown-token rate not measured ({err})")
            self.unknowns = None
            return
        self.stats.tokens += sum(counts)
        self.stats.unknown_tokens += sum(unknown)

    def finish(self) -> None:
        self._count_tokens()
        self.stats.label_counts = dict(sorted(self.labels.items()))
        self._check_classes()
        rate = self.stats.truncation_rate
        if rate is not None and self.stats.truncated:
            # Per-row 'truncated' entries are examples; the count decides whether it matters.
            if rate <= self.limits.truncation_warn_share:
                self.issues.counts[("warning", "truncated")] -= self.stats.truncated
                self.issues.issues[:] = [
                    i
                    for i in self.issues.issues
                    if not (i.code == "truncated" and i.file == self.name)
                ]
            else:
                self.warn("truncation_rate", self._truncation_message(rate))
        unknown = self.stats.unknown_token_rate
        if unknown is not None and unknown > UNKNOWN_TOKEN_LIMIT:
            self.warn(
                "unknown_tokens",
                f"{unknown:.1%} of the tokens are unknown to the tokenizer: the base model "
                "cannot read much of this text",
            )

    def _truncation_message(self, rate: float) -> str:
        """How many texts are cut, and the max_length that would keep 99 % of them whole."""
        message = (
            f"{self.stats.truncated} of {self.stats.tokenized} texts ({rate:.1%}) exceed "
            f"max_length {self.options.max_length} tokens and will be truncated"
        )
        keep = self.stats.length_for(0.99)
        if keep is not None:
            message += f"; max_length {keep} keeps 99% of them whole"
        if self.stats.language_profile.dominant == CHINESE:
            message += " (Chinese takes about one token per character)"
        return message

    def _check_classes(self) -> None:
        if len(self.found) == 1:
            only = next(iter(self.found))
            self.error("single_class", f"a single class ({only!r}): a classifier needs two or more")
            return
        if len(self.labels) < 2:
            return
        (top, most), (bottom, least) = self.labels.most_common()[0], self.labels.most_common()[-1]
        if most > self.limits.imbalance_ratio * least:
            self.warn(
                "imbalance",
                f"class imbalance: {top!r} has {most} rows, {bottom!r} has {least} "
                f"({most / least:.1f}x, threshold {self.limits.imbalance_ratio:g}x)",
            )


def _check_leakage(train: _FileCheck, val: _FileCheck, records: Iterator[Record]) -> None:
    """Validation rows whose text (or near-exact text) is also in the training file."""
    for record in records:
        val.check(record)
        if record.text is None or not record.text.strip():
            continue
        found = train.seen.find(record.text.strip())
        if found is not None:
            how = "same" if found.kind == "duplicate" else "nearly the same"
            val.warn("leakage", f"{how} text as train row {found.row}", record)


def validate_files(
    train_file: str | Path,
    validation_file: str | Path | None = None,
    options: ValidationOptions | None = None,
    limits: ValidationLimits | None = None,
    token_counter: TokenCounter | None = None,
    tokenizer_name: str | None = None,
    unknown_counter: UnknownCounter | None = None,
) -> ValidationReport:
    """Validate a training file (and a validation file): a report, never an exception.

    ``unknown_counter`` (with ``token_counter``) measures the unknown-token rate.
    """
    options = options or ValidationOptions()
    limits = limits or ValidationLimits()
    issues = IssueLog(limits.max_examples)
    checks: list[_FileCheck] = []
    try:
        # reports are stored and shown to users: the file's name, never the server's folder
        train = _FileCheck(
            Path(train_file).name, options, limits, issues, token_counter, unknown_counter
        )
        checks.append(train)
        reader = _read(train_file, options, limits, issues)
        for record in reader:
            train.check(record)
        train.stats.rows = reader.rows
        train.finish()
        if validation_file is not None:
            val = _FileCheck(
                Path(validation_file).name, options, limits, issues, train.counter, train.unknowns
            )
            checks.append(val)
            reader = _read(validation_file, options, limits, issues)
            _check_leakage(train, val, iter(reader))
            val.stats.rows = reader.rows
            val.finish()
    except Exception as err:  # noqa: BLE001 - the report is the only way out, whatever the input
        log.exception("validation failed unexpectedly")
        issues.add("error", "internal", f"validation failed: {type(err).__name__}: {err}")
    counts = {f"{sev}:{code}": n for (sev, code), n in sorted(issues.counts.items()) if n > 0}
    return ValidationReport(
        [c.stats for c in checks],
        sorted(issues.issues, key=_issue_order),
        counts,
        options.max_length,
        tokenizer_name if token_counter is not None else None,
    )


def _issue_order(issue: Issue) -> tuple[int, str, int, int]:
    return (
        0 if issue.severity == "error" else 1,
        issue.file or "",
        issue.row if issue.row is not None else -1,
        issue.line if issue.line is not None else -1,
    )


def _read(
    path: str | Path, options: ValidationOptions, limits: ValidationLimits, issues: IssueLog
) -> RecordReader:
    return RecordReader(
        Path(path),
        options.text_column,
        options.label_column,
        issues,
        max_rows=limits.max_rows,
        max_bytes=limits.max_bytes,
    )
