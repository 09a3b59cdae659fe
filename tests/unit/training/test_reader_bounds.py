"""Inputs that expand are bounded while they are read, in every format (issue 11, class 5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loralab.training.reader import IssueLog, RecordReader

BIG = 20_000_000  # decoded bytes in the bomb
LIMIT = 1_000_000


def parquet_bomb(path: Path, rows: int = 20) -> Path:
    """A few KB on disk, ``BIG`` bytes of text once decoded."""
    text = ["x" * (BIG // rows)] * rows
    table = pa.table({"text": text, "label": ["a"] * rows})
    pq.write_table(table, path, compression="zstd")
    return path


def read(path: Path, **limits: int) -> tuple[int, list[str]]:
    issues = IssueLog(10)
    bounds = {"max_rows": 1_000_000, "max_bytes": LIMIT, **limits}
    reader = RecordReader(path, "text", "label", issues, **bounds)  # type: ignore[arg-type]
    count = sum(1 for _ in reader)
    return count, [f"{i.code}: {i.message}" for i in issues.issues]


def test_a_small_parquet_that_expands_is_refused_before_decoding(tmp_path: Path) -> None:
    path = parquet_bomb(tmp_path / "bomb.parquet")
    assert path.stat().st_size < 50_000
    start = time.perf_counter()
    count, problems = read(path)
    assert count == 0 and problems and problems[0].startswith("too_large")
    assert time.perf_counter() - start < 1.0


def test_parquet_row_count_from_metadata_is_checked_first(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["t"] * 500, "label": ["a"] * 500}), path)
    count, problems = read(path, max_rows=100)
    assert count == 0 and problems[0].startswith("too_many_rows")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_decoded_text_is_bounded_for_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"big{suffix}"
    rows = [("y" * 1000, "a")] * 200
    if suffix == ".jsonl":
        body = "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        body = f"text{sep}label\n" + "".join(f"{t}{sep}{lab}\n" for t, lab in rows)
    path.write_text(body)
    count, problems = read(path, max_decoded_bytes=50_000)
    assert count < 60 and problems[0].startswith("too_large")


def test_reading_stops_at_the_time_limit(tmp_path: Path) -> None:
    path = tmp_path / "slow.csv"
    path.write_text("text,label\n" + "t,a\n" * 20_000)
    issues = IssueLog(10)
    reader = RecordReader(
        path, "text", "label", issues, max_rows=10**6, max_bytes=10**9, max_seconds=0.0
    )
    assert sum(1 for _ in reader) == 0
    assert issues.issues[0].code == "too_slow"


def test_issues_name_the_file_not_the_server_folder(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text\nonly\n")
    _, problems = read(path)
    issues = IssueLog(10)
    list(RecordReader(path, "text", "label", issues, max_rows=10, max_bytes=10**6))
    assert issues.issues[0].file == "bad.csv"
    assert str(tmp_path) not in json.dumps([i.to_dict() for i in issues.issues])
