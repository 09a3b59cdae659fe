"""`loralab sweep FILE`: search training settings with Optuna, prune bad trials early, and
write the best settings as a recipe."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loralab.entrypoints.cli.common import console, err_console, guard, safe

sweep_app = typer.Typer(
    help="Hyperparameter sweeps over training settings (Optuna).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _graceful_stop() -> threading.Event:
    """First Ctrl-C: the running trial ends (evaluated, saved), no new one starts; the summary
    is written and the sweep can be resumed. Second: abort."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err_console.print("[yellow]stopping after this trial's step (Ctrl-C again to abort)[/]")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _quiet_libraries() -> None:
    import logging
    import warnings

    import mlflow  # noqa: F401 - configures its loggers on import; quieten them after
    import optuna
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "-" if value is None else str(value)


@sweep_app.command("sweep")
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (YAML), e.g. configs/sweep-sst2.yaml.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value settings over the file's, e.g. max_steps=300."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name of a new sweep (default: the file's, else a new one).")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Trials in all (instead of the file's budget).")
    ] = None,
    minutes: Annotated[
        float | None, typer.Option(help="Minutes for this worker (instead of the file's).")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue sweep NAME (also: one more worker on a running sweep) with the "
            "file it started with; the trial budget counts every trial so far."
        ),
    ] = None,
) -> None:
    """Run a sweep: each trial trains as a child MLflow run; the best becomes a recipe."""
    from loralab.settings import load_settings
    from loralab.sweeps.local import run_sweep
    from loralab.sweeps.spec import load_spec

    from .progress import RichProgress

    settings = load_settings()
    spec = guard(lambda: load_spec(file).with_budget(trials, minutes))
    _quiet_libraries()
    stop = _graceful_stop()

    def progress_for(number: int, params: dict[str, Any], config: Any) -> RichProgress:
        values = "  ".join(f"{k}={safe(_shown(v))}" for k, v in params.items())
        console.print(f"[bold]trial {number}[/bold]  {values}")
        return RichProgress(console, config.batch_size)

    outcome = guard(
        lambda: run_sweep(
            settings,
            spec,
            name=resume or name,
            resume=resume is not None,
            overrides=overrides or [],
            stop=stop,
            progress_for=progress_for,
        )
    )
    _print_outcome(outcome)


def _print_outcome(outcome: Any) -> None:
    params = sorted({k for row in outcome.rows for k in row.params})
    table = Table(title=f"sweep {safe(outcome.name)} — {outcome.metric} by trial")
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column(outcome.metric, justify="right")
    for param in params:  # values wrap, never cut
        table.add_column(param, overflow="fold")
    table.add_column("run", no_wrap=True, min_width=22)  # run ids are never cut
    best = outcome.best.number if outcome.best else None
    for row in outcome.rows:
        style = "bold green" if row.number == best else ("dim" if row.state != "COMPLETE" else "")
        table.add_row(
            str(row.number),
            row.state.lower(),
            _shown(row.value) + (f" @{row.last_step}" if row.state == "PRUNED" else ""),
            *(safe(_shown(row.params.get(k))) for k in params),
            safe(row.run_id),
            style=style,
        )
    console.print(table)
    if outcome.best is not None:
        console.print(
            f"best:        trial {outcome.best.number}, {outcome.metric} "
            f"{outcome.best.value:.4f} (run {safe(outcome.best.run_id)})"
        )
        console.print(
            f"recipe:      [cyan]{outcome.recipe}[/cyan]  (loralab train {outcome.recipe})"
        )
    else:
        console.print("[yellow]no trial completed: no recipe written[/yellow]")
    console.print(f"plot:        {outcome.plot}")
    console.print(f"MLflow run:  {outcome.parent_run_id} (the trials are its children)")
    if outcome.stopped:
        console.print(f"stopped:     resume with  loralab sweep FILE --resume {outcome.name}")
