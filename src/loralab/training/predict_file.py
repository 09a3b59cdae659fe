"""Classifying every row of a file (CSV, TSV, JSONL, Parquet) into a predictions CSV.

The input is streamed (CSV/TSV/JSONL through the one reader, :class:`RecordReader`, Parquet in
record batches), classified in batches, and written row by row to a temporary file beside the
output, which is renamed into place only when the whole file has been read: a failure leaves no
half-written output. Bad rows (no text, blank text, a list or object where text belongs, a line
that cannot be parsed) are skipped and reported with their row and line numbers; only a file
that cannot be read at all (missing, unsupported type, no text column) is an error.

Output columns: ``row`` (data row, from 1), ``line`` (physical line of the file; for Parquet the
row number), ``label`` (its id), ``label_name``, ``probability`` and ``p_<label>`` per class
(the columns of the MLflow model's output too).
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loralab.training.inference import Prediction
from loralab.training.reader import (
    FORMATS,
    Issue,
    IssueLog,
    Record,
    RecordReader,
    cell_to_text,
    describe,
    supported_formats,
)

Classify = Callable[[list[str]], list[Prediction]]
Progress = Callable[[int], None]
UNBOUNDED = sys.maxsize
PARQUET_BATCH = 1024
# reader issues about the file as a whole (not one row): nothing is written
FATAL_CODES = frozenset(
    {"unsupported", "missing", "unreadable", "too_large", "too_many_rows", "too_slow",
     "missing_column", "empty"}
)  # fmt: skip


class PredictFileError(ValueError):
    """The input file cannot be read at all (nothing was written)."""


@dataclass
class FileReport:
    """What one prediction pass did: rows read, predicted, skipped, and the issues met."""

    rows: int = 0
    predicted: int = 0
    skipped: int = 0
    issues: IssueLog = field(default_factory=lambda: IssueLog(max_examples=50))

    @property
    def examples(self) -> list[Issue]:
        return list(self.issues.issues)

    def lines(self) -> list[str]:
        """One readable line per kept issue (``in.csv: row 3 (line 4): blank text``)."""
        return [describe(issue) for issue in self.issues.issues]


def output_columns(labels: Sequence[str]) -> list[str]:
    return ["row", "line", "label", "label_name", "probability", *(f"p_{n}" for n in labels)]


def estimate_rows(path: Path) -> int | None:
    """Rows to expect, for a progress bar: Parquet metadata, else the count of lines."""
    kind = FORMATS.get(path.suffix.lower())
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        count = 0
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                count += chunk.count(b"\n")
        return max(count - (1 if kind in {"csv", "tsv"} else 0), 0) or None
    except Exception:  # noqa: BLE001 - only a progress estimate; reading reports real errors
        return None


def _parquet_records(path: Path, text_column: str, issues: IssueLog) -> Iterator[Record]:
    """Parquet rows in record batches (the reader wants a label column; a prediction input
    has none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
        names = source.schema_arrow.names
    except (pa.ArrowException, ValueError, OSError) as err:
        issues.add("error", "parse", f"not a readable Parquet file ({err})", file=path.name)
        return
    if text_column not in names:
        found = ", ".join(names) or "none"
        issues.add(
            "error",
            "missing_column",
            f"column {text_column} not found (columns: {found})",
            file=path.name,
        )
        return
    row = 0
    try:
        for batch in source.iter_batches(batch_size=PARQUET_BATCH, columns=[text_column]):
            for value in batch.column(0).to_pylist():
                row += 1
                if isinstance(value, list | dict | bytes):
                    issues.add(
                        "error", "parse", "a list, struct or bytes where text was expected",
                        row=row, line=row + 1, file=path.name,
                    )  # fmt: skip
                    yield Record(row, row + 1, None, None)
                    continue
                yield Record(row, row + 1, cell_to_text(value), None)
    except (pa.ArrowException, ValueError, OSError) as err:
        issues.add("error", "parse", f"cannot be parsed after row {row} ({err})", file=path.name)


def _records(path: Path, text_column: str, issues: IssueLog) -> Iterator[Record]:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PredictFileError(
            f"{path.name}: unsupported file type {path.suffix!r} (use {supported_formats()})"
        )
    if not path.is_file():
        raise PredictFileError(f"{path.name}: no such file")
    if kind == "parquet":
        return _parquet_records(path, text_column, issues)
    # a prediction input has no label column: read the text column twice
    reader = RecordReader(
        path, text_column, text_column, issues, max_rows=UNBOUNDED, max_bytes=UNBOUNDED
    )
    return iter(reader)


def _already_reported(issues: IssueLog, record: Record) -> bool:
    """The reader already logged this row (e.g. a list where text belongs)."""
    last = issues.issues[-1] if issues.issues else None
    return last is not None and (last.row, last.line) == (record.row, record.line)


def _fatal(issues: IssueLog) -> Issue | None:
    """An error that is not about one row: the file as a whole cannot be used."""
    return next(
        (
            i
            for i in issues.issues
            if i.severity == "error"
            and (i.code in FATAL_CODES or (i.code == "parse" and i.row is None))
        ),
        None,
    )


def predict_file(
    path: Path,
    out: Path,
    classify: Classify,
    labels: Sequence[str],
    *,
    text_column: str = "text",
    batch_size: int = 64,
    progress: Progress | None = None,
) -> FileReport:
    """Classify every good row of ``path`` into the CSV ``out`` (written atomically)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = FileReport()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with open(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(output_columns(labels))
            _stream(path, text_column, classify, batch_size, report, writer, progress)
            fatal = _fatal(report.issues)
            if fatal is not None:
                raise PredictFileError(describe(fatal))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return report


def _stream(
    path: Path,
    text_column: str,
    classify: Classify,
    batch_size: int,
    report: FileReport,
    writer: object,
    progress: Progress | None,
) -> None:
    batch: list[Record] = []

    def flush() -> None:
        predictions = classify([r.text or "" for r in batch])
        for record, p in zip(batch, predictions, strict=True):
            writer.writerow(  # type: ignore[attr-defined]
                [record.row, record.line, p.label, p.label_name, f"{p.probability:.6f}",
                 *(f"{v:.6f}" for v in p.probabilities.values())]
            )  # fmt: skip
        report.predicted += len(batch)
        if progress is not None:
            progress(len(batch))
        batch.clear()

    last_row = 0
    for record in _records(path, text_column, report.issues):
        dropped = record.row - last_row - 1  # rows the reader logged and did not yield
        if dropped > 0 and progress is not None:
            progress(dropped)
        last_row = report.rows = record.row
        if record.text is None or not record.text.strip():
            if not _already_reported(report.issues, record):
                reason = "no text" if record.text is None else "blank text"
                report.issues.add(
                    "error", "bad_row", f"{reason} in column {text_column!r}: skipped",
                    row=record.row, line=record.line, file=path.name,
                )  # fmt: skip
            report.skipped += 1
            if progress is not None:
                progress(1)
            continue
        batch.append(record)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    # rows the reader dropped itself (unparseable lines, wrong field counts) are skipped too
    logged = (issue.row or 0 for issue in report.issues.issues)
    report.rows = max(report.rows, *logged, 0)
    if report.rows > last_row and progress is not None:
        progress(report.rows - last_row)
    report.skipped = report.rows - report.predicted
