"""predict_file: every good row of a CSV/JSONL/Parquet file classified, bad rows reported by line
and skipped, the output written atomically (a fake classifier: no model needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from loralab.training.inference import Prediction
from loralab.training.predict_file import PredictFileError, predict_file

LABELS = ["positive", "negative"]


def fake_classify(texts: list[str]) -> list[Prediction]:
    """'good' anywhere -> positive (0.9), else negative (0.8)."""
    out = []
    for text in texts:
        best = 0 if "good" in text else 1
        p = 0.9 if best == 0 else 0.8
        probs = {LABELS[best]: p, LABELS[1 - best]: round(1 - p, 6)}
        out.append(Prediction(best, LABELS[best], p, {n: probs[n] for n in LABELS}))
    return out


def read_out(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run(path: Path, tmp_path: Path, **kwargs: object) -> tuple[list[dict[str, str]], object]:
    out = tmp_path / "preds.csv"
    seen: list[int] = []
    report = predict_file(
        path, out, fake_classify, LABELS, batch_size=2, progress=seen.append, **kwargs
    )  # type: ignore[arg-type]
    assert sum(seen) == report.rows  # the progress bar reaches every row, good or bad
    return read_out(out), report


def test_csv_bad_rows_are_skipped_with_their_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        "id,text\n"  # line 1
        "1,good film\n"  # line 2, row 1
        "2,\n"  # line 3, row 2: blank
        '3,"   "\n'  # line 4, row 3: blank
        "4,a,b\n"  # line 5, row 4: wrong field count
        '5,"multi\nline good"\n'  # lines 6-7, row 5
        "6,awful\n",  # line 8, row 6
        encoding="utf-8",
    )
    rows, report = run(src, tmp_path)
    assert [(r["row"], r["line"], r["label_name"]) for r in rows] == [
        ("1", "2", "positive"),
        ("5", "6", "positive"),
        ("6", "8", "negative"),
    ]
    assert list(rows[0]) == [
        "row", "line", "label", "label_name", "probability", "p_positive", "p_negative"
    ]  # fmt: skip
    assert rows[0]["label"] == "0" and float(rows[0]["p_positive"]) == pytest.approx(0.9)
    assert report.predicted == 3 and report.skipped == 3  # type: ignore[attr-defined]
    text = "\n".join(report.lines())  # type: ignore[attr-defined]
    assert "row 2 (line 3)" in text and "row 3 (line 4)" in text and "row 4 (line 5)" in text


def test_jsonl_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"text": "good"}),
        json.dumps({"text": None}),
        "{not json",
        json.dumps({"text": ["a", "list"]}),
        json.dumps({"other": "no text key"}),
        "",
        json.dumps({"text": "bad"}),
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, report = run(src, tmp_path)
    assert [(r["line"], r["label_name"]) for r in rows] == [("1", "positive"), ("7", "negative")]
    text = "\n".join(report.lines())  # type: ignore[attr-defined]
    for line in (2, 3, 4, 5):
        assert f"(line {line})" in text
    assert report.skipped == 4  # type: ignore[attr-defined]


def test_parquet_streams_in_batches_and_skips_nulls(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["good one", None, "  ", *[f"text {i}" for i in range(2500)]]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"review": texts, "n": list(range(len(texts)))}), src)
    rows, report = run(src, tmp_path, text_column="review")
    assert len(rows) == 2501 and rows[0]["label_name"] == "positive"
    assert rows[-1]["row"] == str(len(texts))
    assert report.skipped == 2  # type: ignore[attr-defined]
    assert any("row 2" in line for line in report.lines())  # type: ignore[attr-defined]


def test_a_file_without_the_text_column_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,body\n1,good\n", encoding="utf-8")
    out = tmp_path / "preds.csv"
    with pytest.raises(PredictFileError, match="column"):
        predict_file(src, out, fake_classify, LABELS)
    assert list(tmp_path.iterdir()) == [src]


def test_a_failure_midway_leaves_the_old_output_untouched(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "good\n" * 10, encoding="utf-8")
    out = tmp_path / "preds.csv"
    out.write_text("old\n", encoding="utf-8")
    calls = 0

    def failing(texts: list[str]) -> list[Prediction]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("device lost")
        return fake_classify(texts)

    with pytest.raises(RuntimeError):
        predict_file(src, out, failing, LABELS, batch_size=4)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "preds.csv"]


@pytest.mark.parametrize("name", ["in.txt", "missing.csv"])
def test_unreadable_inputs_are_clear_errors(tmp_path: Path, name: str) -> None:
    src = tmp_path / name
    if name.endswith(".txt"):
        src.write_text("text\ngood\n", encoding="utf-8")
    with pytest.raises(PredictFileError, match=name.split(".")[0]):
        predict_file(src, tmp_path / "out.csv", fake_classify, LABELS)
    assert not (tmp_path / "out.csv").exists()
