"""The one reader of labelled text files (CSV, TSV, JSONL, Parquet), and the format table.

Training (:func:`loralab.training.data.read_labelled_texts`), validation, versioning and
analysis all read files through :class:`RecordReader`, so they agree on every row by
construction. It reports every problem it meets (as :class:`Issue` records, each with its row
or line) and carries on, one row at a time, so memory stays flat however long the file is; the
training loader turns those issues into one error. Row numbers count data rows from 1 (the
header and blank lines are not rows); line numbers are physical lines of the file.

Format rules: UTF-8 with an optional byte-order mark; CRLF or LF; blank lines are not rows. CSV
quotes as the csv module does (quoted separators and newlines); TSV has no quoting (a quote is
text, as in SST-2). JSONL holds one object per line. Cells are text as found: ``1.0`` becomes
``"1"``, ``true`` becomes ``"true"``, null or a missing key is absent; "NA" is text.

Inputs that expand are bounded while they are read, for every format: the decoded text of all
cells together may not exceed ``max_decoded_bytes`` (a few KB of Parquet can hold 100 MB of
text), reading may not take longer than ``max_seconds``, and a Parquet file whose own metadata
already says it has too many rows or too much data is refused before any page is decoded.
Reading stops at the first bound crossed (an error issue); nothing is kept of what was read.
Issues name the file by its name only, never a server path.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Severity = Literal["error", "warning"]
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
"""File suffix -> format: the one list of dataset file types that loralab reads."""
BOM = b"\xef\xbb\xbf"
MAX_KEYS_LISTED = 1000  # JSONL keys remembered for the missing-column check


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset: errors block training, warnings do not."""

    severity: Severity
    code: str
    message: str
    row: int | None = None
    line: int | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "row": self.row,
            "line": self.line,
            "file": self.file,
        }


def describe(issue: Issue) -> str:
    """``file: row 3 (line 4): empty text``."""
    where = []
    if issue.row is not None:
        where.append(f"row {issue.row}")
    if issue.line is not None:
        where.append(f"line {issue.line}" if issue.row is None else f"(line {issue.line})")
    prefix = f"{issue.file}: " if issue.file else ""
    place = " ".join(where)
    return f"{prefix}{place}: {issue.message}" if place else f"{prefix}{issue.message}"


def supported_formats() -> str:
    """``.csv, .tsv, .jsonl or .parquet``, for messages."""
    *first, last = FORMATS
    return f"{', '.join(first)} or {last}"


@dataclass
class IssueLog:
    """Every issue is counted; the first ``max_examples`` of each code (per file) are kept."""

    max_examples: int = 20
    issues: list[Issue] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _kept: Counter[tuple[str, str | None]] = field(default_factory=Counter, repr=False)

    def add(
        self,
        severity: Severity,
        code: str,
        message: str,
        *,
        row: int | None = None,
        line: int | None = None,
        file: str | None = None,
    ) -> None:
        self.counts[(severity, code)] += 1
        if self._kept[(code, file)] < self.max_examples:
            self._kept[(code, file)] += 1
            self.issues.append(Issue(severity, code, message, row, line, file))

    def has_errors(self) -> bool:
        return any(severity == "error" for severity, _ in self.counts)


@dataclass(frozen=True)
class Record:
    """One data row: text and label as found (None where absent or null), not yet stripped."""

    row: int
    line: int
    text: str | None
    label: str | None


def cell_to_text(value: object) -> str | None:
    """A cell as text, the way the training loader reads it (1.0 -> "1"; None/NaN -> None)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return None


class RecordReader:
    """Iterate the rows of one file, logging every problem to ``issues`` instead of raising."""

    def __init__(
        self,
        path: Path,
        text_column: str,
        label_column: str,
        issues: IssueLog,
        *,
        max_rows: int,
        max_bytes: int,
        max_decoded_bytes: int | None = None,
        max_seconds: float | None = None,
        name: str | None = None,
    ) -> None:
        self.path = path
        self.text_column = text_column
        self.label_column = label_column
        self.issues = issues
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        # decoded text can be no larger than a plain file may be, unless told tighter
        self.max_decoded_bytes = max_decoded_bytes if max_decoded_bytes is not None else max_bytes
        self.max_seconds = max_seconds
        self.name = name or path.name  # never the server's folder
        self.rows = 0
        self.errors = 0
        self.decoded = 0

    def _error(
        self, code: str, message: str, row: int | None = None, line: int | None = None
    ) -> None:
        self.errors += 1
        if row is not None:
            self.rows = max(self.rows, row)
        self.issues.add("error", code, message, row=row, line=line, file=self.name)

    def __iter__(self) -> Iterator[Record]:
        kind = FORMATS.get(self.path.suffix.lower())
        if kind is None:
            self._error(
                "unsupported",
                f"unsupported file type {self.path.suffix!r} (use {supported_formats()})",
            )
            return
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self._error("missing", "dataset file not found")
            return
        except OSError as err:
            self._error("unreadable", f"cannot read the file ({err.strerror or err})")
            return
        if not self.path.is_file():
            self._error("unreadable", "not a regular file")
            return
        if size > self.max_bytes:
            self._error("too_large", f"{size:,} bytes: more than the limit of {self.max_bytes:,}")
            return
        try:
            if kind == "parquet":
                yield from self._limit(self._parquet())
            else:
                with self.path.open("rb") as handle:
                    lines = self._decoded_lines(handle)
                    if kind == "jsonl":
                        yield from self._limit(self._jsonl(lines))
                    else:
                        yield from self._limit(self._delimited(lines, kind))
        except OSError as err:
            self._error("unreadable", f"cannot read the file ({err.strerror or err})")
        if self.rows == 0 and not self.errors:
            self._error("empty", "no rows (the file is empty or holds only a header)")

    def _limit(self, records: Iterable[Record]) -> Iterator[Record]:
        """Records up to the first bound crossed: rows, decoded size, time."""
        deadline = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        for record in records:
            problem = self._bound_crossed(record, deadline)
            if problem is not None:
                code, message = problem
                self._error(code, message, row=record.row, line=record.line)
                return
            self.rows = max(self.rows, record.row)
            yield record

    def _bound_crossed(self, record: Record, deadline: float | None) -> tuple[str, str] | None:
        if record.row > self.max_rows:
            return "too_many_rows", f"more than the limit of {self.max_rows:,} rows"
        self.decoded += len(record.text or "") + len(record.label or "")
        if self.decoded > self.max_decoded_bytes:
            return (
                "too_large",
                f"the decoded text is larger than the limit of {self.max_decoded_bytes:,} bytes",
            )
        if deadline is not None and time.monotonic() > deadline:
            return "too_slow", f"reading took longer than the limit of {self.max_seconds:g} s"
        return None

    def _decoded_lines(self, handle: Any) -> Iterator[str]:
        """Physical lines as text: NUL bytes and invalid UTF-8 are logged (per line) and dropped."""
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if b"\x00" in raw:
                self._error("nul_byte", "NUL byte in the line", line=number)
                raw = raw.replace(b"\x00", b"")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                self._error(
                    "encoding",
                    f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})",
                    line=number,
                )
                yield raw.decode("utf-8", errors="replace")

    def _delimited(self, lines: Iterator[str], kind: str) -> Iterator[Record]:
        # TSV has no quoting convention (quotes are text, as in SST-2), matching the trainer.
        reader = csv.reader(
            lines,
            delimiter="\t" if kind == "tsv" else ",",
            quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL,
            strict=True,
        )
        header: list[str] | None = None
        text_at = label_at = -1
        row = 0
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                if header is None:
                    self._error("parse", f"header cannot be parsed ({err})", line=start)
                    return
                row += 1
                self._error("parse", f"cannot be parsed ({err})", row=row, line=start)
                continue
            if not fields:
                continue  # a blank line is not a row (as for the trainer)
            if header is None:
                header = fields
                missing = [c for c in (self.text_column, self.label_column) if c not in header]
                if missing:
                    found = ", ".join(header) or "none"
                    self._error(
                        "missing_column",
                        f"column(s) {', '.join(missing)} not found (columns: {found})",
                        line=start,
                    )
                    return
                text_at, label_at = header.index(self.text_column), header.index(self.label_column)
                continue
            row += 1
            if len(fields) != len(header):
                self._error(
                    "column_count",
                    f"{len(fields)} fields, expected {len(header)} (quote texts that hold the "
                    "separator)",
                    row=row,
                    line=start,
                )
                continue
            yield Record(row, start, fields[text_at], fields[label_at])

    def _jsonl(self, lines: Iterator[str]) -> Iterator[Record]:
        row = 0
        keys: dict[str, None] = {}  # every key met, in order (for the missing-column message)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row += 1
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as err:
                reason = getattr(err, "msg", None) or type(err).__name__
                self._error("parse", f"not valid JSON ({reason})", row=row, line=number)
                continue
            if not isinstance(value, dict):
                self._error("parse", "expected a JSON object", row=row, line=number)
                continue
            if len(keys) < MAX_KEYS_LISTED:
                keys.update(dict.fromkeys(value))
            yield Record(
                row,
                number,
                self._json_cell(value.get(self.text_column), row, number),
                self._json_cell(value.get(self.label_column), row, number),
            )
        missing = [c for c in (self.text_column, self.label_column) if c not in keys]
        if missing and row and len(keys) < MAX_KEYS_LISTED:
            found = ", ".join(keys) or "none"
            self._error(
                "missing_column", f"column(s) {', '.join(missing)} not found (columns: {found})"
            )

    def _json_cell(self, value: object, row: int, line: int) -> str | None:
        if isinstance(value, list | dict):
            self._error("parse", "a list or object where text was expected", row=row, line=line)
            return None
        return cell_to_text(value)

    def _parquet(self) -> Iterator[Record]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            source = pq.ParquetFile(self.path)
            names = source.schema_arrow.names
        except (pa.ArrowException, ValueError, OSError) as err:
            self._error("parse", f"not a readable Parquet file ({err})")
            return
        missing = [c for c in (self.text_column, self.label_column) if c not in names]
        if missing:
            found = ", ".join(names) or "none"
            self._error(
                "missing_column", f"column(s) {', '.join(missing)} not found (columns: {found})"
            )
            return
        if not self._parquet_fits(source.metadata):
            return
        row = 0
        columns = [self.text_column, self.label_column]
        try:
            for batch in source.iter_batches(batch_size=1024, columns=columns):
                texts, labels = (batch.column(i).to_pylist() for i in range(2))
                for text, label in zip(texts, labels, strict=True):
                    row += 1
                    yield Record(row, row + 1, cell_to_text(text), cell_to_text(label))
        except (pa.ArrowException, ValueError, OSError) as err:
            self._error("parse", f"cannot be parsed after row {row} ({err})", row=row + 1)

    def _parquet_fits(self, metadata: Any) -> bool:
        """Refuse, before decoding a page, a file whose metadata says it is too big."""
        if metadata.num_rows > self.max_rows:
            self._error(
                "too_many_rows",
                f"{metadata.num_rows:,} rows: more than the limit of {self.max_rows:,}",
            )
            return False
        size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        if size > self.max_decoded_bytes:
            self._error(
                "too_large",
                f"{size:,} bytes once decoded: more than the limit of {self.max_decoded_bytes:,}",
            )
            return False
        return True
