"""A rich live progress bar for training: step, loss, throughput, ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """ProgressReporter that draws one bar per training run."""

    def __init__(self, console: Console, batch_size: int) -> None:
        self.console = console
        self.batch_size = batch_size
        self.progress = Progress(
            TextColumn("[bold blue]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None
        self._t0 = 0.0
        self._step0 = 0

    def start(self, total_steps: int) -> None:
        if self.task is not None:  # the loop restarted (smaller batch after out-of-memory)
            self.progress.update(self.task, total=total_steps, completed=0)
        else:
            self.progress.start()
            self.task = self.progress.add_task("train", total=total_steps, loss="-", rate="-")
        self._t0 = time.perf_counter()
        self._step0 = -1

    def advance(self, step: int, values: dict[str, float]) -> None:
        if self.task is None:
            return
        if self._step0 < 0:
            self._step0, self._t0 = step, time.perf_counter()
        elapsed = time.perf_counter() - self._t0
        done = step - self._step0
        rate = f"{done * self.batch_size / elapsed:,.0f}" if elapsed > 0 and done > 0 else "-"
        loss = values.get("loss")
        loss_text = f"{loss:.4f}" if loss is not None and loss == loss else "-"
        self.progress.update(self.task, completed=step, loss=loss_text, rate=rate)

    def note(self, message: str) -> None:
        self.progress.console.print(f"  [dim]{message}[/dim]")

    def finish(self) -> None:
        self.progress.stop()
