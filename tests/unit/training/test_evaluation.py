"""Classification metrics on a hand-computed example, and the confusion-matrix plot."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from loralab.training.evaluation import (
    classification_report,
    plot_confusion_matrix,
    summary_metrics,
)

LABELS = ["neg", "neu", "pos"]
# true:  neg neg neu neu pos pos
# pred:  neg neu neu neu neg neu      -> "pos" is never predicted
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 0, 1])


@pytest.fixture()
def report() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division must not warn
        return classification_report(Y_TRUE, Y_PRED, LABELS)


def test_accuracy(report: dict) -> None:
    assert report["accuracy"] == pytest.approx(3 / 6)


def test_per_class(report: dict) -> None:
    per_class = report["per_class"]
    assert list(per_class) == LABELS
    # neg: TP 1, FP 1 (a pos), FN 1 (a neu)
    assert per_class["neg"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    # neu: TP 2, FP 2, FN 0
    assert per_class["neu"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2}
    )
    # pos: never predicted -> precision 0 by zero_division, recall 0
    assert per_class["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_macro_f1_averages_every_class(report: dict) -> None:
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)


def test_confusion_matrix_rows_are_truth(report: dict) -> None:
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 1, 0]]
    assert report["labels"] == LABELS


def test_report_is_plain_python(report: dict) -> None:
    import json

    json.dumps(report)  # numpy scalars would make this raise
    assert type(report["accuracy"]) is float
    assert type(report["per_class"]["neg"]["support"]) is int


def test_class_absent_from_truth_and_prediction() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b", "c"])
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert report["accuracy"] == pytest.approx(2 / 3)


def test_perfect_predictions() -> None:
    y = np.array([0, 1, 2, 1])
    report = classification_report(y, y, LABELS)
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0


def test_summary_metrics_match_report(report: dict) -> None:
    summary = summary_metrics(Y_TRUE, Y_PRED, num_labels=3)
    assert summary == pytest.approx(
        {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
    )


def test_plot_confusion_matrix_writes_png(tmp_path: Path, report: dict) -> None:
    path = tmp_path / "confusion_matrix.png"
    plot_confusion_matrix(report, str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


def test_plot_handles_a_class_without_rows(tmp_path: Path) -> None:
    report = classification_report(np.array([0, 0]), np.array([0, 1]), ["a", "b"])
    path = tmp_path / "cm.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division by a zero row sum
        plot_confusion_matrix(report, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
