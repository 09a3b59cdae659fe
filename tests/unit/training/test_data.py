"""Reading labelled texts, label lists and ids, the stratified split and the data fingerprint."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from loralab.training.data import (
    DataError,
    LabelledTexts,
    build_label_list,
    encode_labels,
    fingerprint,
    read_labelled_texts,
    stratified_split,
)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read(path: Path) -> LabelledTexts:
    return read_labelled_texts(path, "text", "label")


# -- CSV --------------------------------------------------------------------------------------


def test_csv_with_bom_crlf_and_quoted_fields(tmp_path: Path) -> None:
    content = (
        "\ufefftext,label\r\n"
        '"hello, world",pos\r\n'
        '"first line\r\nsecond line",neg\r\n'
        '"she said ""hi""",pos\r\n'
        "plain,neg\r\n"
    )
    data = read(write_bytes(tmp_path / "d.csv", content.encode("utf-8")))
    assert data.texts == [
        "hello, world",
        "first line\r\nsecond line",
        'she said "hi"',
        "plain",
    ]
    assert data.labels == ["pos", "neg", "pos", "neg"]
    assert data.source == str(tmp_path / "d.csv")
    assert len(data) == 4


def test_csv_bom_does_not_rename_first_column(tmp_path: Path) -> None:
    # Without BOM handling the first column would be "\ufefftext" and "text" would be missing.
    data = read(write_bytes(tmp_path / "d.csv", "\ufefftext,label\na,b\n".encode()))
    assert data.texts == ["a"]


def test_csv_strips_texts_and_labels(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "d.csv", b'text,label\n"  padded text   ",pos  \nx ,neg\n')
    data = read(path)
    assert data.texts == ["padded text", "x"]
    assert data.labels == ["pos", "neg"]


@pytest.mark.parametrize("word", ["NA", "null", "NaN", "None", "n/a", "#N/A"])
def test_csv_missing_value_words_are_text(tmp_path: Path, word: str) -> None:
    data = read(write_bytes(tmp_path / "d.csv", f"text,label\n{word},pos\nok,NA\n".encode()))
    assert data.texts == [word, "ok"]
    assert data.labels == ["pos", "NA"]


def test_csv_integer_labels_read_as_text(tmp_path: Path) -> None:
    data = read(write_bytes(tmp_path / "d.csv", b"text,label\na,0\nb,1\nc,10\nd,007\n"))
    assert data.labels == ["0", "1", "10", "007"]  # no int/float conversion, no "1.0"


def test_csv_string_labels(tmp_path: Path) -> None:
    data = read(write_bytes(tmp_path / "d.csv", b"text,label\na,positive\nb,negative\n"))
    assert data.labels == ["positive", "negative"]


def test_csv_other_column_names(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "d.csv", b"id,sentence,y\n1,hello,a\n2,bye,b\n")
    data = read_labelled_texts(path, "sentence", "y")
    assert data.texts == ["hello", "bye"]
    assert data.labels == ["a", "b"]


def test_csv_unquoted_comma_in_first_row_is_an_error(tmp_path: Path) -> None:
    # Every row has one field too many: an error naming the row, never shifted columns (a
    # reader that took the first field as an index would train on " world" labelled "pos").
    path = write_bytes(tmp_path / "d.csv", b"text,label\nhello, world,pos\nso, bad,neg\n")
    with pytest.raises(DataError, match=r"row 1 \(line 2\): 3 fields, expected 2"):
        read(path)


def test_csv_unquoted_comma_in_later_row_is_an_error(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "d.csv", b"text,label\nfine,pos\nhello, world,pos\n")
    with pytest.raises(DataError, match="line 3"):
        read(path)


# -- TSV --------------------------------------------------------------------------------------


def test_tsv_keeps_double_quotes_verbatim(tmp_path: Path) -> None:
    content = (
        "text\tlabel\n"
        '"quoted" at the start\t1\n'
        'an odd " quote\t0\n'
        '"fully quoted"\t1\n'
        "it 's fine\t0\n"
    )
    data = read(write_bytes(tmp_path / "d.tsv", content.encode("utf-8")))
    assert data.texts == ['"quoted" at the start', 'an odd " quote', '"fully quoted"', "it 's fine"]
    assert data.labels == ["1", "0", "1", "0"]


def test_tsv_suffix_is_case_insensitive(tmp_path: Path) -> None:
    data = read(write_bytes(tmp_path / "D.TSV", b"text\tlabel\na, b\tx\n"))
    assert data.texts == ["a, b"]  # a comma is not a separator in TSV


# -- JSONL ------------------------------------------------------------------------------------


def test_jsonl(tmp_path: Path) -> None:
    rows = [
        {"text": "  héllo wörld ", "label": "pos", "extra": 1},
        {"text": "line\nbreak", "label": "neg"},
        {"text": "null", "label": "pos"},
    ]
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n"  # blank ignored
    data = read(write_bytes(tmp_path / "d.jsonl", lines.encode("utf-8")))
    assert data.texts == ["héllo wörld", "line\nbreak", "null"]
    assert data.labels == ["pos", "neg", "pos"]


def test_jsonl_integer_labels_are_not_floats(tmp_path: Path) -> None:
    content = '{"text": "a", "label": 0}\n{"text": "b", "label": 12}\n'
    data = read(write_bytes(tmp_path / "d.jsonl", content.encode()))
    assert data.labels == ["0", "12"]


def test_jsonl_truncated_line_names_line_number(tmp_path: Path) -> None:
    content = '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "lab'
    with pytest.raises(DataError, match=r"row 3 \(line 3\): not valid JSON"):
        read(write_bytes(tmp_path / "d.jsonl", content.encode()))


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    content = '{"text": "a", "label": "x"}\n["b", "y"]\n'
    with pytest.raises(DataError, match=r"row 2 \(line 2\): expected a JSON object"):
        read(write_bytes(tmp_path / "d.jsonl", content.encode()))


def test_jsonl_null_label_names_row(tmp_path: Path) -> None:
    content = '{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n'
    with pytest.raises(DataError, match="row 2: empty label"):
        read(write_bytes(tmp_path / "d.jsonl", content.encode()))


# -- Parquet ----------------------------------------------------------------------------------


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["one ", "two", "NA"], "label": [1, 0, 1]}).to_parquet(path)
    data = read(path)
    assert data.texts == ["one", "two", "NA"]
    assert data.labels == ["1", "0", "1"]


def test_parquet_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read(write_bytes(tmp_path / "d.parquet", b"not a parquet file"))


# -- errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        read(tmp_path / "absent.csv")
    assert "absent.csv" in str(info.value)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="not found"):
        read(tmp_path / "dir.csv")


@pytest.mark.parametrize("name", ["d.xlsx", "d.txt", "d"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    path = write_bytes(tmp_path / name, b"text,label\na,b\n")
    with pytest.raises(DataError, match="unsupported file type") as info:
        read(path)
    assert ".csv" in str(info.value)  # says what is supported


def test_missing_text_column_lists_columns_found(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "d.csv", b"sentence,label\na,b\n")
    with pytest.raises(DataError) as info:
        read(path)
    message = str(info.value)
    assert "column(s) text not found" in message
    assert "columns: sentence, label" in message


def test_missing_label_column_lists_columns_found(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "d.jsonl", b'{"text": "a", "y": 1}\n')
    with pytest.raises(DataError) as info:
        read(path)
    message = str(info.value)
    assert "column(s) label not found" in message
    assert "columns: text, y" in message


@pytest.mark.parametrize("empty_text", ['""', '"   "'])
def test_empty_text_names_the_row(tmp_path: Path, empty_text: str) -> None:
    content = f"text,label\ngood,pos\n{empty_text},neg\nalso good,pos\n"
    with pytest.raises(DataError, match="row 2: empty text"):
        read(write_bytes(tmp_path / "d.csv", content.encode()))


def test_empty_label_names_the_row(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="row 1: empty label"):
        read(write_bytes(tmp_path / "d.csv", b"text,label\ngood,\n"))


def test_many_problems_are_summarised(tmp_path: Path) -> None:
    content = "text,label\n" + ",x\n" * 8
    with pytest.raises(DataError) as info:
        read(write_bytes(tmp_path / "d.csv", content.encode()))
    message = str(info.value)
    assert "row 1: empty text" in message and "row 5: empty text" in message
    assert "row 6" not in message
    assert "(and 3 more)" in message


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no rows"):
        read(write_bytes(tmp_path / "d.csv", b"text,label\n"))


@pytest.mark.parametrize("name", ["d.csv", "d.jsonl"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="empty"):
        read(write_bytes(tmp_path / name, b""))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.csv", b"text,label\ngood,pos\nbad \xff\xfe bytes,neg\n"),
        ("d.tsv", b"text\tlabel\ngood\tpos\nlatin-1 caf\xe9\tneg\n"),
        ("d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n'),
    ],
)
def test_non_utf8_bytes(tmp_path: Path, name: str, content: bytes) -> None:
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        read(write_bytes(tmp_path / name, content))
    assert "line 3" in str(info.value) or "line 2" in str(info.value)


def test_non_utf8_error_names_the_right_line_in_a_large_file(tmp_path: Path) -> None:
    content = b"text,label\n" + b"some text,pos\n" * 50_000 + b"caf\xe9,neg\n"
    with pytest.raises(DataError, match=r"line 50002: not valid UTF-8"):
        read(write_bytes(tmp_path / "d.csv", content))


# -- label lists and ids ----------------------------------------------------------------------


def test_build_label_list_declared_order_wins() -> None:
    assert build_label_list(["a", "b", "c"], ("c", "a", "b")) == ["c", "a", "b"]


def test_build_label_list_integers_sort_numerically() -> None:
    assert build_label_list(["10", "2", "1", "2", "0"], None) == ["0", "1", "2", "10"]


def test_build_label_list_negative_integers() -> None:
    assert build_label_list(["1", "-1", "0"], None) == ["-1", "0", "1"]


def test_build_label_list_strings_alphabetical() -> None:
    assert build_label_list(["pos", "neg", "neutral", "pos"], None) == ["neg", "neutral", "pos"]


def test_build_label_list_mixed_is_alphabetical() -> None:
    assert build_label_list(["10", "2", "x"], None) == ["10", "2", "x"]


def test_encode_labels() -> None:
    data = LabelledTexts(["a", "b", "c"], ["pos", "neg", "pos"], "mem")
    assert encode_labels(data, ["neg", "pos"]) == [1, 0, 1]


def test_encode_labels_unknown_label_names_row_and_label() -> None:
    data = LabelledTexts(["a", "b", "c"], ["pos", "neg", "neutral"], "train.csv")
    with pytest.raises(DataError) as info:
        encode_labels(data, ["neg", "pos"])
    message = str(info.value)
    assert "train.csv" in message
    assert "row 3: unknown label 'neutral'" in message
    assert "labels: neg, pos" in message


# -- stratified split ---------------------------------------------------------------------------


def labels_60_30_10() -> list[int]:
    return [0] * 60 + [1] * 30 + [2] * 10


def test_split_is_seeded() -> None:
    labels = labels_60_30_10()
    first = stratified_split(labels, 0.2, seed=1)
    assert stratified_split(labels, 0.2, seed=1) == first
    assert stratified_split(labels, 0.2, seed=2) != first


def test_split_partitions_the_rows() -> None:
    train, val = stratified_split(labels_60_30_10(), 0.2, seed=0)
    assert sorted(train + val) == list(range(100))
    assert not set(train) & set(val)
    assert len(val) == 20
    assert train == sorted(train) and val == sorted(val)


def test_split_is_stratified() -> None:
    labels = labels_60_30_10()
    train, val = stratified_split(labels, 0.2, seed=3)
    assert Counter(labels[i] for i in val) == {0: 12, 1: 6, 2: 2}
    assert Counter(labels[i] for i in train) == {0: 48, 1: 24, 2: 8}


def test_split_keeps_every_class_in_training() -> None:
    labels = [0] * 20 + [1] * 2 + [2] * 2
    for seed in range(5):
        train, _ = stratified_split(labels, 0.4, seed=seed)
        assert {labels[i] for i in train} == {0, 1, 2}


def test_split_holds_out_at_least_one_row_per_class() -> None:
    labels = [0] * 90 + [1] * 3 + [2] * 3 + [3] * 3
    _, val = stratified_split(labels, 0.1, seed=0)
    assert {labels[i] for i in val} == {0, 1, 2, 3}


def test_split_refuses_a_class_with_a_single_row() -> None:
    with pytest.raises(DataError, match=r"label id\(s\) 2 have a single row"):
        stratified_split([0, 0, 0, 1, 1, 1, 2], 0.2, seed=0)


def test_split_keeps_a_row_of_each_label_on_both_sides() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    train, val = stratified_split(labels, 0.45, seed=0)
    assert sorted(labels[i] for i in train) == [0, 1, 2]
    assert sorted(labels[i] for i in val) == [0, 1, 2]


# -- fingerprint ----------------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive() -> None:
    texts = [f"text {i}" for i in range(20)]
    labels = ["a", "b"] * 10
    base = fingerprint(LabelledTexts(texts, labels, "x.csv"))
    assert len(base) == 16
    # same content, other source and fresh lists: same fingerprint
    assert fingerprint(LabelledTexts(list(texts), list(labels), "elsewhere.csv")) == base
    changed_text = texts.copy()
    changed_text[7] = "text 7!"
    assert fingerprint(LabelledTexts(changed_text, labels, "x.csv")) != base
    changed_label = labels.copy()
    changed_label[7] = "a"
    assert fingerprint(LabelledTexts(texts, changed_label, "x.csv")) != base
    swapped = texts.copy()
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert fingerprint(LabelledTexts(swapped, labels, "x.csv")) != base  # order-sensitive


def test_fingerprint_distinguishes_train_and_validation_boundary() -> None:
    a = LabelledTexts(["x", "y"], ["0", "1"], "a")
    b = LabelledTexts(["z"], ["0"], "b")
    moved_a = LabelledTexts(["x"], ["0"], "a")
    moved_b = LabelledTexts(["y", "z"], ["1", "0"], "b")
    assert fingerprint(a, b) != fingerprint(moved_a, moved_b)


def test_fingerprint_of_files(tmp_path: Path) -> None:
    one = write_bytes(tmp_path / "one.csv", b"text,label\na,x\nb,y\n")
    crlf = write_bytes(tmp_path / "two.csv", b"text,label\r\na ,x\r\nb,y\r\n")
    edited = write_bytes(tmp_path / "three.csv", b"text,label\na,x\nb!,y\n")
    assert fingerprint(read(one)) == fingerprint(read(crlf))  # same content after reading
    assert fingerprint(read(one)) != fingerprint(read(edited))
