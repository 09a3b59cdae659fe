"""Property tests: whatever the bytes, rows or encoding, validation returns a report."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralab.datasets.validation import ValidationLimits, ValidationReport, validate_files

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "gb18030"])
cells = st.one_of(st.text(max_size=30), st.none(), st.integers(), st.floats(allow_nan=True))


def check(report: ValidationReport) -> None:
    assert isinstance(report, ValidationReport)
    assert report.exit_code in (0, 1, 2)
    assert (report.exit_code == 2) == (report.error_count > 0)
    assert not any(i.code == "internal" for i in report.issues), report.issues
    json.dumps(report.to_dict())  # always serialisable


def validate_bytes(data: bytes, suffix: str) -> ValidationReport:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(data)
        return validate_files(path, limits=ValidationLimits(max_rows=500, max_bytes=100_000))


@FAST
@given(st.binary(max_size=400), SUFFIXES)
def test_arbitrary_bytes_give_a_report(data: bytes, suffix: str) -> None:
    check(validate_bytes(data, suffix))


@FAST
@given(st.binary(max_size=300), SUFFIXES)
def test_arbitrary_bytes_after_a_valid_header(data: bytes, suffix: str) -> None:
    header = b"text\tlabel\n" if suffix == ".tsv" else b"text,label\n"
    check(validate_bytes(header + data, suffix))


@FAST
@given(st.lists(st.tuples(cells, cells), max_size=20), SUFFIXES, ENCODINGS)
def test_arbitrary_rows_in_any_encoding(
    rows: list[tuple[object, object]], suffix: str, encoding: str
) -> None:
    if suffix == ".jsonl":
        text = "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
        text = buffer.getvalue()
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode(encoding, errors="replace")
    report = validate_bytes(data, suffix)
    check(report)
    if encoding in ("utf-16",) and rows:
        assert report.error_count > 0


@FAST
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.sampled_from("ab")), min_size=1, max_size=20
    )
)
def test_well_formed_rows_report_their_own_problems_only(rows: list[tuple[str, str]]) -> None:
    lines = "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
    report = validate_bytes(lines.encode(), ".jsonl")
    check(report)
    allowed = {"empty_text", "single_class", "nul_byte"}
    assert {i.code for i in report.errors} <= allowed
