"""How a layer above jobs watches a job's training: a sweep's trial reports its evaluations.

The jobs layer sits below sweeps, so it knows the watcher only by this shape. For a job that a
sweep queued, the worker asks ``watch(trial)`` (``trial``: the sweep id and trial number on the
job row) for a :class:`RunWatch`; the run's tracker is passed through :meth:`RunWatch.observe`
(so the watcher sees every evaluation) and the run stops, evaluated and saved, once
:meth:`RunWatch.is_set` says so. The job then ends cancelled with :meth:`RunWatch.reason`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from loralab.training.interfaces import MetricLogger


class RunWatch(Protocol):
    def observe(self, tracker: MetricLogger) -> MetricLogger:
        """The run's tracker as training should use it (wrapped to see evaluations)."""

    def is_set(self) -> bool:
        """The watcher asks the run to stop now."""

    def reason(self) -> str | None:
        """Why it stopped the run (the job's message), or None if it did not."""


WatchFor = Callable[[tuple[str, int]], "RunWatch | None"]
