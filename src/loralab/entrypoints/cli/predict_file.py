"""``loralab predict --file``: every row of a file through a model, into a predictions CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from loralab.entrypoints.cli.common import console, err_console, guard, safe
from loralab.errors import InvalidInput
from loralab.settings import Settings

REPORT_LINES = 20


def _fail(message: str) -> None:
    raise InvalidInput(message)


def predict_file_command(
    settings: Settings,
    source: Path,
    out: Path,
    ref: str,
    device: str,
    text_column: str,
    batch_size: int,
) -> None:
    """Stream ``source`` through the model ``ref`` into ``out`` (CSV), with a progress bar;
    bad rows are reported with their line numbers and skipped."""
    from loralab.entrypoints.cli.export import resolve_run
    from loralab.training.catalog import ModelSourceError
    from loralab.training.inference import load_predictor
    from loralab.training.predict_file import PredictFileError, estimate_rows, predict_file

    if batch_size < 1:
        guard(lambda: _fail("--batch-size must be at least 1"))
    if out.exists() and out.is_dir():
        guard(lambda: _fail(f"--out {out} is a folder; give a file name such as preds.csv"))
    run = guard(lambda: resolve_run(settings, ref))

    def load() -> Any:
        try:
            return load_predictor(run, device=device)
        except (ModelSourceError, OSError, ValueError) as err:
            raise InvalidInput(str(err)) from None

    predictor = guard(load)
    columns = (
        TextColumn("[bold]predicting[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("rows", total=estimate_rows(source))

        def run_file() -> Any:
            try:
                return predict_file(
                    source,
                    out,
                    lambda texts: predictor.predict(texts, batch_size),
                    predictor.labels,
                    text_column=text_column,
                    batch_size=batch_size,
                    progress=lambda n: bar.advance(task, n),
                )
            except PredictFileError as err:
                raise InvalidInput(str(err)) from None

        report = guard(run_file)
    done = f"predicted {report.predicted:,} rows, skipped {report.skipped:,}"
    console.print(f"{done}: [cyan]{safe(str(out))}[/cyan]")
    lines = report.lines()
    for line in lines[:REPORT_LINES]:
        err_console.print(f"[yellow]skipped[/yellow] {safe(line)}")
    hidden = report.skipped - min(len(lines), REPORT_LINES)
    if hidden > 0:
        err_console.print(f"... and {hidden:,} more skipped rows")
