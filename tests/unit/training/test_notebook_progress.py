"""The notebook progress bar: what it draws, and when it is chosen."""

from __future__ import annotations

import io
import sys
import types

import pytest

from loralab.training.interfaces import NullProgress
from loralab.training.notebook import NotebookProgress, default_progress, running_in_ipython


def test_bar_shows_step_loss_rate_and_notes() -> None:
    out = io.StringIO()
    progress = NotebookProgress(16, widgets=False, file=out)
    progress.start(10)
    progress.advance(0, {})
    progress.advance(3, {"loss": 0.51234})
    progress.note("eval step 3: accuracy 0.8")
    progress.advance(4, {"loss": float("nan")})
    progress.finish()
    text = out.getvalue()
    assert "3/10" in text
    assert "loss=0.5123" in text
    assert "samples/s=" in text
    assert "eval step 3: accuracy 0.8" in text
    assert "4/10" in text
    assert "nan" not in text.lower()  # a NaN loss is not drawn
    assert progress.notes == ["eval step 3: accuracy 0.8"]
    assert progress.bar.n == 4


def test_restart_resets_the_same_bar() -> None:
    out = io.StringIO()
    progress = NotebookProgress(8, widgets=False, file=out)
    progress.start(10)
    progress.advance(5, {"loss": 1.0})
    bar = progress.bar
    progress.start(12)  # the loop restarted with a smaller batch
    assert progress.bar is bar
    assert bar.total == 12
    assert bar.n == 0
    progress.finish()


def test_note_before_start_is_printed() -> None:
    out = io.StringIO()
    NotebookProgress(8, widgets=False, file=out).note("language: mostly Chinese")
    assert "language: mostly Chinese" in out.getvalue()


def test_outside_ipython_training_stays_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not running_in_ipython()
    assert isinstance(default_progress(32), NullProgress)


def test_under_ipython_the_bar_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # no ipywidgets
    assert running_in_ipython()
    progress = default_progress(32)
    assert isinstance(progress, NotebookProgress)
    assert progress.batch_size == 32


def test_ipython_installed_but_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert not running_in_ipython()
