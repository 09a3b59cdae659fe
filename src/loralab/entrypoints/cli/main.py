"""The `loralab` command line: train, inspect runs, predict."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from loralab.entrypoints.cli.api import api as api_command
from loralab.entrypoints.cli.audit import audit_app
from loralab.entrypoints.cli.common import (
    Column,
    console,
    err_console,
    guard,
    print_json,
    print_table,
    safe,
)
from loralab.entrypoints.cli.data import data_app
from loralab.entrypoints.cli.export import export_command
from loralab.entrypoints.cli.models import models_app
from loralab.entrypoints.cli.serve import client_app, serve
from loralab.entrypoints.cli.sweep import sweep as sweep_command
from loralab.entrypoints.cli.users import users_app
from loralab.entrypoints.cli.worker import worker as worker_command
from loralab.settings import Settings, load_settings

app = typer.Typer(
    help="Fine-tune text classifiers with LoRA, track runs in MLflow, and predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(
    help="Inspect training runs (results/<experiment>/<run_id>/).", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.command("worker")(worker_command)
app.add_typer(client_app, name="client")
app.command()(serve)
app.command("api")(api_command)
app.command("export")(export_command)
app.command("sweep")(sweep_command)


def _quiet_libraries() -> None:
    """Keep the terminal for our progress and tables: library chatter goes to logs.txt."""
    import logging
    import warnings

    import mlflow  # noqa: F401 - configures its loggers on import; quieten them after
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _graceful_stop() -> threading.Event:
    """First Ctrl-C: finish the step, evaluate, save, keep the run. Second: abort."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err_console.print("[yellow]stopping after this step (Ctrl-C again to abort)[/yellow]")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _fmt(value: Any, digits: int = 4) -> str:
    return (
        f"{value:.{digits}f}" if isinstance(value, float) else "-" if value is None else str(value)
    )


def _mlflow_hint(settings: Settings) -> str:
    from loralab.infra.tracking import tracking_uri

    uri = tracking_uri(settings)
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri} --port {settings.mlflow.ui_port}"
    return f"open {uri}"


@app.command()
def train(
    config: Annotated[
        Path, typer.Argument(help="Experiment recipe (YAML), e.g. configs/minilm-l6.yaml.")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="key=value settings that override the recipe, e.g. epochs=1 batch_size=16."
        ),
    ] = None,
) -> None:
    """Fine-tune a LoRA classifier from a YAML recipe, with live progress and a summary."""
    from loralab.training.config import load_config

    settings = load_settings()
    cfg = guard(lambda: _load_config(load_config, config, overrides or []))
    _quiet_libraries()
    from loralab.experiments import service

    from .progress import RichProgress

    console.print(
        f"[bold]loralab train[/bold] {config}  base_model={cfg.base_model}  "
        f"train_file={cfg.train_file}"
    )
    stop = _graceful_stop()
    result = guard(
        lambda: service.train(settings, cfg, RichProgress(console, cfg.batch_size), stop)
    )
    _print_result(settings, result)


def _load_config(loader: Callable[..., Any], path: Path, overrides: list[str]) -> Any:
    from loralab.errors import InvalidInput
    from loralab.training.config import ConfigError

    try:
        return loader(path, overrides)
    except ConfigError as err:
        raise InvalidInput(str(err)) from None


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix) to continue.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="key=value changes allowed on resume: epochs, max_steps, "
            "early_stopping_patience, device, precision, num_threads, eval_batch_size, "
            "logging_steps."
        ),
    ] = None,
) -> None:
    """Continue a stopped or crashed run from its last complete checkpoint."""
    from loralab.experiments import service

    from .progress import RichProgress

    _quiet_libraries()
    settings = load_settings()
    stop = _graceful_stop()
    result = guard(
        lambda: service.resume(settings, run, overrides or [], RichProgress(console, 1), stop)
    )
    _print_result(settings, result)


def _print_result(settings: Settings, result: Any) -> None:
    report = result.report
    table = Table(title=f"run {result.run.run_id} — {result.status}", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", _fmt(report["accuracy"]))
    table.add_row("macro F1", _fmt(report["macro_f1"]))
    for name, values in report["per_class"].items():
        table.add_row(
            f"  {name}: precision / recall", f"{values['precision']:.3f} / {values['recall']:.3f}"
        )
    table.add_row("train throughput", f"{result.samples_per_second:,.1f} samples/s")
    table.add_row("train time", f"{result.train_seconds:,.1f} s")
    table.add_row("device", result.device)
    kept = result.retention
    table.add_row(
        "checkpoints kept", f"best {kept.best} · last {kept.last} · fastest {kept.fastest}"
    )
    console.print(table)
    console.print(f"run folder:  [cyan]{result.run.root}[/cyan]")
    console.print(f"MLflow run:  {result.tracker_run_id}")
    console.print(f"MLflow UI:   [green]{_mlflow_hint(settings)}[/green]")
    console.print(f'predict:     loralab predict --run {result.run.run_id} "some text"')
    from loralab.training.runs import read_state

    state = read_state(result.run)
    if state.get("registered_model"):
        model = state["registered_model"]
        console.print(f"registered:  {model} (Staging) — loralab models promote {model}")
    elif state.get("registration_error"):
        console.print(f"[yellow]not registered:[/yellow] {state['registration_error']}")


JsonFlag = Annotated[bool, typer.Option("--json", help="Print plain JSON.")]
RUN_COLUMNS = (
    Column("experiment", key=True),
    Column("run id", key=True),
    Column("status"),
    Column("base model"),
    Column("accuracy", justify="right", droppable=True),
    Column("macro F1", justify="right", droppable=True),
    Column("started", droppable=True),
)


@runs_app.command("list")
def runs_list(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Experiments and their runs, newest first, with key metrics."""
    from loralab.experiments import service

    settings = load_settings()
    summaries = service.list_run_summaries(settings, experiment)
    if as_json:
        print_json(summaries)
        return
    if not summaries:
        console.print(f"no runs under {safe(settings.storage.results_dir)}")
        return
    rows = [
        [safe(s.experiment), safe(s.run_id), safe(s.status), safe(s.base_model or "-"),
         _fmt(s.accuracy), _fmt(s.macro_f1), safe(s.started)]
        for s in summaries
    ]  # fmt: skip
    print_table(f"runs in {settings.storage.results_dir}", RUN_COLUMNS, rows)


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix; 'latest' for the newest.")],
    as_json: JsonFlag = False,
) -> None:
    """Config, metrics, per-class report, confusion matrix and files of one run."""
    from loralab.experiments import service

    settings = load_settings()
    run_id = _resolve_run_id(settings, run)
    detail = guard(lambda: service.show_run(settings, run_id))
    if as_json:
        print_json(detail)
        return
    s = detail["summary"]
    console.print(f"[bold]{safe(s.experiment)}/{safe(s.run_id)}[/bold]  status {safe(s.status)}")
    console.print(f"folder: {safe(s.path)}", soft_wrap=True)
    console.print(escape(detail["config"]))
    metrics = detail["metrics"]
    report = metrics.get("report")
    if report:
        table = Table(title="validation report (best checkpoint)")
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for name, v in report["per_class"].items():
            table.add_row(
                safe(name),
                _fmt(v["precision"], 3),
                _fmt(v["recall"], 3),
                _fmt(v["f1"], 3),
                str(v["support"]),
            )
        console.print(table)
        console.print(f"accuracy {_fmt(report['accuracy'])}  macro F1 {_fmt(report['macro_f1'])}")
        matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
        matrix.add_column("")
        for name in report["labels"]:
            matrix.add_column(safe(name), justify="right")
        for name, row in zip(report["labels"], report["confusion_matrix"], strict=True):
            matrix.add_row(safe(name), *[str(x) for x in row])
        console.print(matrix)
        console.print(f"checkpoints: {metrics.get('checkpoints')}  train: {metrics.get('train')}")
    elif detail["state"].get("error"):
        console.print(f"[red]error:[/red] {safe(detail['state']['error'])}")
    console.print("files: " + ", ".join(safe(name) for name in detail["files"]))


def _resolve_run_id(settings: Settings, run: str) -> str:
    if run != "latest":
        return run
    from loralab.experiments import service

    return guard(lambda: service.latest_run(settings)).run_id


@app.command()
def predict(
    texts: Annotated[
        list[str] | None, typer.Argument(help="One or more texts to classify (or --file).")
    ] = None,
    run: Annotated[str, typer.Option(help="Run id, unique prefix, or 'latest'.")] = "latest",
    model: Annotated[
        str | None,
        typer.Option(help="NAME@production, NAME@staging, NAME@VERSION or a run id (not --run)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Classify every row of a .csv, .tsv, .jsonl or .parquet file."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="With --file: the predictions CSV to write.")
    ] = None,
    text_column: Annotated[str, typer.Option(help="With --file: the text column.")] = "text",
    batch_size: Annotated[int, typer.Option(help="With --file: texts per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Classify texts, or every row of a file (--file ... --out preds.csv), with a trained run
    or a registered model."""
    from loralab.errors import InvalidInput
    from loralab.experiments import service

    _quiet_libraries()
    settings = load_settings()
    if file is not None:
        if texts or out is None:
            guard(lambda: _raise(InvalidInput("--file needs --out and no texts")))
            return
        from loralab.entrypoints.cli.predict_file import predict_file_command

        predict_file_command(settings, file, out, model or run, device, text_column, batch_size)
        return
    if not texts:
        guard(lambda: _raise(InvalidInput("give one or more texts, or --file and --out")))
        return
    if model is not None:
        from loralab.entrypoints.cli.export import resolve_run

        run = guard(lambda: resolve_run(settings, model)).run_id
    run_id = _resolve_run_id(settings, run)
    predictions = guard(lambda: service.predict(settings, run_id, texts, device))
    if as_json:
        for text, p in zip(texts, predictions, strict=True):
            sys.stdout.write(json.dumps({"text": text, **p.__dict__}, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"predictions of run {run_id}")
    table.add_column("text", overflow="fold")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for text, p in zip(texts, predictions, strict=True):
        table.add_row(text, p.label_name, f"{p.probability:.4f}")
    console.print(table)


def _raise(err: Exception) -> None:
    raise err


@app.command()
def catalog(as_json: JsonFlag = False) -> None:
    """Base models known by name, their language and where they come from."""
    from loralab.training.catalog import CATALOG

    if as_json:
        print_json(list(CATALOG.values()))
        return
    columns = (Column("name", key=True), Column("language"), Column("source"), Column("about"))
    rows = [
        [entry.name, entry.language,
         "PyPI package (offline)" if entry.packaged else f"hub id {entry.hub_id}",
         entry.description]
        for entry in CATALOG.values()
    ]  # fmt: skip
    print_table("base-model catalog (any local BERT-family directory works too)", columns, rows)


if __name__ == "__main__":  # pragma: no cover
    app()
