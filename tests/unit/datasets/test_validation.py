"""Validation fixtures: every error and warning, with its row/line number and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loralab.datasets.validation import (
    ValidationLimits,
    ValidationOptions,
    ValidationReport,
    validate_files,
)
from loralab.training.reader import Issue

GOOD = ["good film", "bad film", "great plot", "awful plot", "nice cast", "poor cast"]


def rows(n: int = 6) -> list[tuple[str, str]]:
    return [(GOOD[i % 6] + f" {i}", "pos" if i % 2 == 0 else "neg") for i in range(n)]


def csv_text(data: list[tuple[str, str]], header: str = "text,label") -> str:
    return header + "\n" + "".join(f"{t},{lab}\n" for t, lab in data)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def only(report: ValidationReport, code: str) -> Issue:
    found = [i for i in report.issues if i.code == code]
    assert found, f"no {code!r} in {report.issues}"
    return found[0]


def test_clean_file_is_ok(tmp_path: Path) -> None:
    report = validate_files(write(tmp_path, "a.csv", csv_text(rows())))
    assert report.status == "ok" and report.exit_code == 0
    assert report.files[0].rows == 6
    assert report.files[0].label_counts == {"neg": 3, "pos": 3}


# -- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    report = validate_files(tmp_path / "nope.csv")
    assert only(report, "missing").message == "dataset file not found"
    assert report.exit_code == 2


def test_unreadable_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    assert only(validate_files(tmp_path / "dir.csv"), "unreadable").severity == "error"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    content = csv_text(rows()).encode() + b"caf\xe9 au lait,pos\n"
    issue = only(validate_files(write(tmp_path, "a.csv", content)), "encoding")
    assert issue.line == 8 and "not valid UTF-8" in issue.message


def test_latin1_file_is_not_utf8(tmp_path: Path) -> None:
    content = csv_text([("très bien", "pos"), ("mal", "neg")]).encode("latin-1")
    assert only(validate_files(write(tmp_path, "a.csv", content)), "encoding").line == 2


def test_nul_byte(tmp_path: Path) -> None:
    content = csv_text(rows()).encode().replace(b"bad film 1", b"bad\x00film 1")
    issue = only(validate_files(write(tmp_path, "a.csv", content)), "nul_byte")
    assert issue.line == 3 and "NUL" in issue.message


def test_broken_quoting(tmp_path: Path) -> None:
    content = csv_text(rows(3)) + '"oops"x,pos\n' + "fine,neg\n"
    issue = only(validate_files(write(tmp_path, "a.csv", content)), "parse")
    assert (issue.row, issue.line) == (4, 5) and "cannot be parsed" in issue.message


def test_unclosed_quote(tmp_path: Path) -> None:
    content = csv_text(rows(3)) + '"never closed,pos\nmore,neg\n'
    issue = only(validate_files(write(tmp_path, "a.csv", content)), "parse")
    assert issue.line == 5 and "unexpected end of data" in issue.message


def test_truncated_json_line(tmp_path: Path) -> None:
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in rows(4)]
    lines.append('{"text": "cut off", "lab')
    issue = only(validate_files(write(tmp_path, "a.jsonl", "\n".join(lines))), "parse")
    assert (issue.row, issue.line) == (5, 5) and "not valid JSON" in issue.message


def test_wrong_column_count(tmp_path: Path) -> None:
    content = csv_text(rows(3)) + "a, b, c,pos\n"
    issue = only(validate_files(write(tmp_path, "a.csv", content)), "column_count")
    assert issue.row == 4 and "4 fields, expected 2" in issue.message


@pytest.mark.parametrize("header", ["sentence,label", "text,target"])
def test_missing_column(tmp_path: Path, header: str) -> None:
    report = validate_files(write(tmp_path, "a.csv", csv_text(rows(), header)))
    issue = only(report, "missing_column")
    assert "not found" in issue.message and issue.line == 1


def test_empty_and_whitespace_text(tmp_path: Path) -> None:
    content = csv_text(rows(4)) + ",pos\n" + '"   ",neg\n'
    report = validate_files(write(tmp_path, "a.csv", content))
    found = [(i.row, i.message) for i in report.issues if i.code == "empty_text"]
    assert found == [(5, "empty or whitespace-only text"), (6, "empty or whitespace-only text")]


def test_label_missing_null_and_empty(tmp_path: Path) -> None:
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in rows(4)]
    lines += [json.dumps({"text": "x y", "label": None}), json.dumps({"text": "no label"})]
    lines += [json.dumps({"text": "empty", "label": " "})]
    report = validate_files(write(tmp_path, "a.jsonl", "\n".join(lines)))
    found = [(i.row, i.message) for i in report.issues if i.code == "label_missing"]
    assert found == [
        (5, "label is missing or null"),
        (6, "label is missing or null"),
        (7, "empty label"),
    ]


def test_label_outside_declared_set(tmp_path: Path) -> None:
    content = csv_text(rows(4)) + "strange,maybe\n"
    options = ValidationOptions(labels=("pos", "neg"))
    issue = only(
        validate_files(write(tmp_path, "a.csv", content), options=options), "label_unknown"
    )
    assert issue.row == 5 and "unknown label 'maybe'" in issue.message


def test_single_class(tmp_path: Path) -> None:
    content = csv_text([(f"text {i}", "pos") for i in range(5)])
    assert (
        "a single class"
        in only(validate_files(write(tmp_path, "a.csv", content)), "single_class").message
    )


def test_too_many_rows(tmp_path: Path) -> None:
    limits = ValidationLimits(max_rows=4)
    issue = only(
        validate_files(write(tmp_path, "a.csv", csv_text(rows())), limits=limits), "too_many_rows"
    )
    assert issue.row == 5 and "limit of 4 rows" in issue.message


def test_too_many_bytes(tmp_path: Path) -> None:
    limits = ValidationLimits(max_bytes=20)
    issue = only(
        validate_files(write(tmp_path, "a.csv", csv_text(rows())), limits=limits), "too_large"
    )
    assert "more than the limit of 20" in issue.message


def test_empty_file_and_unsupported_type(tmp_path: Path) -> None:
    assert only(validate_files(write(tmp_path, "a.csv", "")), "empty").severity == "error"
    assert only(validate_files(write(tmp_path, "a.txt", "x")), "unsupported").severity == "error"


def test_errors_are_all_reported_not_just_the_first(tmp_path: Path) -> None:
    content = csv_text(rows(2)) + ",pos\n" + "x,\n" + "a,b,c\n"
    report = validate_files(write(tmp_path, "a.csv", content))
    assert {i.code for i in report.errors} == {"empty_text", "label_missing", "column_count"}
    assert report.error_count == 3


# -- warnings ----------------------------------------------------------------------------------


def test_whitespace(tmp_path: Path) -> None:
    content = csv_text(rows(4)) + '"  padded ",pos\n'
    report = validate_files(write(tmp_path, "a.csv", content))
    issue = only(report, "whitespace")
    assert issue.row == 5 and report.exit_code == 1


def test_exact_and_near_duplicates(tmp_path: Path) -> None:
    content = csv_text(rows(4)) + "good film 0,pos\n" + "Good  film 0!,pos\n"
    report = validate_files(write(tmp_path, "a.csv", content))
    assert (only(report, "duplicate").row, only(report, "duplicate").message) == (
        5,
        "same text as row 1",
    )
    assert only(report, "near_duplicate").row == 6
    assert "row 1" in only(report, "near_duplicate").message


def test_conflicting_labels(tmp_path: Path) -> None:
    content = csv_text(rows(4)) + "good film 0,neg\n"
    issue = only(validate_files(write(tmp_path, "a.csv", content)), "conflicting_labels")
    assert issue.row == 5 and "row 1" in issue.message and "'neg'" in issue.message


def test_class_imbalance(tmp_path: Path) -> None:
    data = [(f"pos text {i}", "pos") for i in range(12)] + [("neg text", "neg")]
    limits = ValidationLimits(imbalance_ratio=10)
    issue = only(
        validate_files(write(tmp_path, "a.csv", csv_text(data)), limits=limits), "imbalance"
    )
    assert "12.0x" in issue.message and issue.severity == "warning"


def test_leakage_between_train_and_validation(tmp_path: Path) -> None:
    train = write(tmp_path, "train.csv", csv_text(rows()))
    val = write(tmp_path, "val.csv", csv_text([("unseen text", "pos"), ("bad film 1", "neg")]))
    report = validate_files(train, val)
    issue = only(report, "leakage")
    assert issue.file == val.name and issue.row == 2 and "train row 2" in issue.message
    assert len(report.files) == 2


def test_truncation_rate_uses_the_token_counter(tmp_path: Path) -> None:
    data = rows(4) + [(" ".join(["word"] * 50), "pos"), (" ".join(["word"] * 60), "neg")]
    path = write(tmp_path, "a.csv", csv_text(data))

    def counter(texts: list[str]) -> list[int]:  # whitespace "tokenizer" + 2 special tokens
        return [len(t.split()) + 2 for t in texts]

    options = ValidationOptions(max_length=16)
    report = validate_files(path, options=options, token_counter=counter, tokenizer_name="ws")
    assert report.files[0].truncated == 2 and report.files[0].truncation_rate == pytest.approx(
        1 / 3
    )
    assert "2 of 6 texts" in only(report, "truncation_rate").message
    assert [i.row for i in report.issues if i.code == "truncated"] == [5, 6]
    # Under the threshold, truncation is reported in the stats but is no warning.
    quiet = validate_files(
        path,
        options=options,
        limits=ValidationLimits(truncation_warn_share=0.5),
        token_counter=counter,
    )
    assert quiet.files[0].truncated == 2 and quiet.status == "ok"


def test_tsv_quotes_are_text_and_bom_crlf_are_tolerated(tmp_path: Path) -> None:
    content = "\ufefftext\tlabel\r\n" + 'he said "hi\tpos\r\n' + "it's bad\tneg\r\n"
    report = validate_files(write(tmp_path, "a.tsv", content))
    assert report.status == "ok", report.issues


def test_issue_examples_are_capped_but_all_counted(tmp_path: Path) -> None:
    data = [(f" text {i}", "pos" if i % 2 else "neg") for i in range(50)]
    report = validate_files(
        write(tmp_path, "a.csv", csv_text(data)), limits=ValidationLimits(max_examples=5)
    )
    assert len([i for i in report.issues if i.code == "whitespace"]) == 5
    assert report.counts["warning:whitespace"] == 50
