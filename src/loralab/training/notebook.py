"""Training progress in a notebook: a tqdm bar (a widget where ipywidgets is installed).

``run_training`` reports through a :class:`~loralab.training.interfaces.ProgressReporter`.
:class:`NotebookProgress` draws one bar per run with the loss, samples/s and the ETA, and prints
the run's notes (evaluations, warnings) above it. :func:`default_progress` picks it when the code
runs under IPython or Jupyter, and the silent :class:`NullProgress` elsewhere (a script, a worker)::

    from loralab.training import run_training
    from loralab.training.notebook import NotebookProgress
    run_training(config, Path("results"), progress=NotebookProgress(config.batch_size))
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import Any, TextIO

from loralab.training.interfaces import NullProgress, ProgressReporter


def running_in_ipython() -> bool:
    """True inside IPython or a Jupyter kernel (where a live bar is wanted)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        return ipython.get_ipython() is not None
    except Exception:  # noqa: BLE001 - a broken IPython install means "not a notebook"
        return False


def _bar_class(widgets: bool | None) -> Any:
    """tqdm's notebook widget where ipywidgets can draw it, else its text bar.

    ``widgets=None`` decides by whether ipywidgets is installed (``tqdm.auto`` would decide the
    same but warns when it is missing; a text bar is what we want then, without a warning).
    """
    if widgets is None:
        widgets = running_in_ipython() and importlib.util.find_spec("ipywidgets") is not None
    if widgets:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    from tqdm.std import tqdm as text_tqdm

    return text_tqdm


class NotebookProgress:
    """A :class:`ProgressReporter` that draws a tqdm bar: step, loss, samples/s, ETA."""

    def __init__(
        self, batch_size: int, *, widgets: bool | None = None, file: TextIO | None = None
    ) -> None:
        self.batch_size = batch_size
        self._bar_class = _bar_class(widgets)
        self._file = file
        self.bar: Any = None
        self.notes: list[str] = []
        self._t0 = 0.0
        self._step0 = -1

    def start(self, total_steps: int) -> None:
        if self.bar is None:
            kwargs: dict[str, Any] = {"desc": "training", "unit": "step", "dynamic_ncols": True}
            if self._file is not None:
                kwargs["file"] = self._file
            self.bar = self._bar_class(total=total_steps, **kwargs)
        else:  # the loop restarted (a smaller batch after out-of-memory)
            self.bar.reset(total=total_steps)
        self._t0, self._step0 = time.perf_counter(), -1

    def advance(self, step: int, values: dict[str, float]) -> None:
        if self.bar is None:
            return
        if self._step0 < 0:
            self._step0, self._t0 = step, time.perf_counter()
        postfix: dict[str, str] = {}
        loss = values.get("loss")
        if loss is not None and loss == loss:  # NaN is shown as nothing
            postfix["loss"] = f"{loss:.4f}"
        elapsed, done = time.perf_counter() - self._t0, step - self._step0
        if elapsed > 0 and done > 0:
            postfix["samples/s"] = f"{done * self.batch_size / elapsed:,.0f}"
        self.bar.n = step
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def note(self, message: str) -> None:
        self.notes.append(message)
        if self.bar is not None:
            self.bar.write(message, file=self._file)
        else:
            print(message, file=self._file or sys.stderr)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()


def default_progress(batch_size: int) -> ProgressReporter:
    """A :class:`NotebookProgress` under IPython or Jupyter, else a silent reporter."""
    if running_in_ipython():
        return NotebookProgress(batch_size)
    return NullProgress()
