"""Training and validation read every file the same way: generated files, same rows.

Both go through :class:`loralab.training.reader.RecordReader`; these properties pin down that
the training loader returns exactly the rows that were written (stripped), in order, and that
validation counts the same rows and labels, whatever the format and its details: BOM, CRLF,
quoted separators and newlines, quotes in TSV, unicode, integer or string labels, blank lines.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralab.datasets.validation import validate_files
from loralab.training.data import read_labelled_texts

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any unicode but NUL (an error everywhere) and surrogates; at least one visible character.
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
texts = st.text(_chars, min_size=1, max_size=40).filter(lambda t: t.strip() != "")
# TSV has no quoting: a text cannot hold a tab or a line break there.
tsv_texts = texts.filter(lambda t: not any(c in t for c in "\t\n\r")).filter(
    lambda t: t.strip() != ""
)
labels = st.one_of(st.integers(-5, 20), st.sampled_from(["pos", "neg", " néutre ", "0", "007"]))


def _lines(lines: list[str], crlf: bool, blank_every: int) -> str:
    end = "\r\n" if crlf else "\n"
    out = []
    for i, line in enumerate(lines):
        out.append(line + end)
        if blank_every and i % blank_every == 0:
            out.append(end)  # a blank line is not a row
    return "".join(out)


def _write(
    path: Path, rows: list[tuple[str, object]], bom: bool, crlf: bool, blank_every: int
) -> None:
    kind = path.suffix
    if kind == ".parquet":
        label_values = [lab for _, lab in rows]
        if not all(isinstance(lab, int) for lab in label_values):
            label_values = [str(lab) for lab in label_values]
        table = pa.table({"text": [t for t, _ in rows], "label": label_values})
        pq.write_table(table, path)
        return
    if kind == ".jsonl":
        body = _lines(
            [json.dumps({"text": t, "label": lab}, ensure_ascii=False) for t, lab in rows],
            crlf,
            blank_every,
        )
    elif kind == ".tsv":
        body = _lines(["text\tlabel", *(f"{t}\t{lab}" for t, lab in rows)], crlf, blank_every)
    else:
        buffer = io.StringIO()
        # the csv module quotes a bare CR only when it is part of the line terminator
        quoting = csv.QUOTE_ALL if any("\r" in t for t, _ in rows) else csv.QUOTE_MINIMAL
        writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n", quoting=quoting)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
        body = buffer.getvalue()
    path.write_bytes((("\ufeff" if bom else "") + body).encode("utf-8"))


@st.composite
def datasets(draw: st.DrawFn) -> tuple[str, list[tuple[str, object]], bool, bool, int]:
    suffix = draw(st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]))
    row_texts = tsv_texts if suffix == ".tsv" else texts
    rows = draw(st.lists(st.tuples(row_texts, labels), min_size=1, max_size=15))
    return suffix, rows, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 3))


@FAST
@given(datasets())
def test_training_and_validation_read_the_rows_that_were_written(
    case: tuple[str, list[tuple[str, object]], bool, bool, int],
) -> None:
    suffix, rows, bom, crlf, blank_every = case
    expected = [(t.strip(), str(lab).strip()) for t, lab in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        _write(path, rows, bom, crlf, blank_every)
        data = read_labelled_texts(path, "text", "label")
        report = validate_files(path)
    assert list(zip(data.texts, data.labels, strict=True)) == expected
    stats = report.files[0]
    assert stats.valid_rows == len(expected)
    assert stats.label_counts == dict(sorted(Counter(lab for _, lab in expected).items()))
    parse_codes = {"parse", "column_count", "encoding", "nul_byte", "missing_column"}
    assert not parse_codes & {i.code for i in report.errors}, report.errors


@FAST
@given(st.lists(st.tuples(texts, labels), min_size=1, max_size=10), st.booleans())
def test_a_text_holding_the_separator_or_a_newline_survives_csv_quoting(
    rows: list[tuple[str, object]], crlf: bool
) -> None:
    rows = [(f'{t}, "q"\n{t}', lab) for t, lab in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        _write(path, rows, bom=True, crlf=crlf, blank_every=0)
        data = read_labelled_texts(path, "text", "label")
    assert data.texts == [t.strip() for t, _ in rows]
