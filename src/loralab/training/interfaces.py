"""Small interfaces through which training reaches the outside world.

Real implementations live with their callers (MLflow in loralab.infra.tracking, the rich
progress bar in the CLI); :class:`NullLogger` and :class:`NullProgress` do nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class MetricLogger(Protocol):
    """Experiment tracking: one run, its params, metrics, tags and files."""

    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        """Open (or reopen, when ``existing`` is given) a run; return its tracker id."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...

    def end_run(self, status: str) -> None:
        """Close the run; status is FINISHED, FAILED or KILLED."""


@runtime_checkable
class CheckpointSink(Protocol):
    """Optional beside a MetricLogger: keeps a copy of each complete checkpoint elsewhere (the
    MLflow tracker: in the shared artifact store, so another machine can resume the run).

    The loop calls it when the logger has these methods; a logger without them (or the
    :class:`NullLogger`'s no-ops) keeps checkpoints on this machine only.
    """

    def save_checkpoint(self, checkpoint: Path, run_files: list[Path]) -> None:
        """``checkpoint`` is complete (its marker is written); ``run_files`` (config, state)
        are what rebuilds the run folder around it."""

    def drop_checkpoints(self, checkpoints: list[Path]) -> None:
        """Retention deleted these checkpoint folders on disk."""


class ProgressReporter(Protocol):
    """Live progress of one training run."""

    def start(self, total_steps: int) -> None: ...

    def advance(self, step: int, values: dict[str, float]) -> None: ...

    def note(self, message: str) -> None: ...

    def finish(self) -> None: ...


class StopSignal(Protocol):
    """Asked between steps; ``threading.Event`` satisfies it."""

    def is_set(self) -> bool: ...


class NullLogger:
    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        return existing or ""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def end_run(self, status: str) -> None:
        pass

    def save_checkpoint(self, checkpoint: Path, run_files: list[Path]) -> None:
        pass

    def drop_checkpoints(self, checkpoints: list[Path]) -> None:
        pass


class NullProgress:
    def start(self, total_steps: int) -> None:
        pass

    def advance(self, step: int, values: dict[str, float]) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass


class NeverStop:
    def is_set(self) -> bool:
        return False


class AnyStop:
    """StopSignal: set when any of its signals is (a job's cancel flag, a sweep's pruner)."""

    def __init__(self, *signals: StopSignal) -> None:
        self.signals = signals

    def is_set(self) -> bool:
        return any(s.is_set() for s in self.signals)
