"""`loralab data ...`: validate, register, list, show, diff and analyse datasets (thin)."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from loralab.entrypoints.cli.common import console, err_console, guard, open_services
from loralab.errors import LoralabError
from loralab.settings import load_settings

data_app = typer.Typer(
    help="Validate, version and analyse datasets. A dataset is a file (.csv, .tsv, .jsonl, "
    ".parquet) or a registered NAME@VERSION (NAME@latest, NAME@v2 or NAME@2, or a fingerprint "
    "prefix of 6+ hex digits).",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Experiment recipe (YAML): its text_column, label_column, labels, base_model "
        "(tokenizer) and max_length are used.",
    ),
]
TextColumn = Annotated[str | None, typer.Option(help="Text column (default: text).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column (default: label).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _spec(config: Path | None, text_column: str | None, label_column: str | None) -> Any:
    from loralab.datasets.service import DataSpec
    from loralab.errors import InvalidInput
    from loralab.training.config import ConfigError, load_config

    spec = DataSpec()
    if config is not None:
        try:
            spec = DataSpec.from_config(load_config(config))
        except ConfigError as err:
            raise InvalidInput(str(err)) from None
    changes = {k: v for k, v in (("text_column", text_column), ("label_column", label_column)) if v}
    return spec.__class__(**{**spec.__dict__, **changes})


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


def _print_report(report: Any) -> None:
    from loralab.datasets.validation import describe

    for stats in report.files:
        labels = ", ".join(f"{k}: {n}" for k, n in stats.label_counts.items()) or "-"
        rate = stats.truncation_rate
        truncation = "" if rate is None else f"; over max_length {report.max_length}: {rate:.2%}"
        unknown = stats.unknown_token_rate
        truncation += "" if unknown is None else f"; unknown tokens: {unknown:.2%}"
        langs = ", ".join(
            f"{k} {v / max(1, stats.valid_rows):.0%}" for k, v in stats.languages.items()
        )
        console.print(f"[bold]{stats.name}[/bold]: {stats.rows} rows; labels {labels}{truncation}")
        console.print(f"  languages: {langs or '-'}")
    if report.issues:
        table = Table(title="problems (errors block training; warnings do not)")
        for column in ("severity", "kind", "where", "reason"):
            table.add_column(column, overflow="fold")
        for issue in report.issues:
            colour = "red" if issue.severity == "error" else "yellow"
            where = describe(issue).removesuffix(issue.message).rstrip(": ") or "file"
            table.add_row(
                f"[{colour}]{issue.severity}[/{colour}]", issue.code, where, issue.message
            )
        console.print(table)
        totals = ", ".join(f"{k} {n}" for k, n in report.counts.items())
        console.print(f"all occurrences: {totals} (the table lists the first of each kind)")
    verdict = {"ok": "[green]ok[/green]", "warnings": "[yellow]warnings only[/yellow]"}
    console.print(
        f"result: {verdict.get(report.status, '[red]errors[/red]')} "
        f"({report.error_count} errors, {report.warning_count} warnings)"
    )


@data_app.command()
def validate(
    file: Annotated[str, typer.Argument(help="Data file or NAME@VERSION.")],
    config: ConfigOption = None,
    validation_file: Annotated[
        str | None,
        typer.Option(help="Validation file (or NAME@VERSION): checked too, and for overlap."),
    ] = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    no_tokens: Annotated[
        bool, typer.Option("--no-tokens", help="Skip the truncation rate (no tokenizer).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check a dataset before training: errors and warnings with rows and reasons.

    Exit codes: 0 no problems; 1 warnings only (training would run); 2 errors (training
    refuses the data), also for a bad argument or an unknown dataset.
    """
    from loralab.datasets import service

    settings = load_settings()

    def run() -> Any:
        spec = _spec(config, text_column, label_column)
        val = validation_file
        if val is None and config is not None:
            from loralab.training.config import load_config

            val = load_config(config).validation_file
        return service.validate_dataset(settings, file, spec, val, measure_tokens=not no_tokens)

    report = guard(run)
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_report(report)
    raise typer.Exit(report.exit_code)


@data_app.command()
def register(
    name: Annotated[str, typer.Argument(help="Dataset name: a-z, 0-9, '.', '_', '-'.")],
    file: Annotated[Path, typer.Argument(help="Data file to store as a new version.")],
    config: ConfigOption = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a file and store an immutable copy as the next version of NAME.

    Files with errors are not stored (exit 2). The same content is stored once: registering it
    again returns the existing version.
    """
    from loralab.datasets import service, uploads

    def run() -> Any:
        spec = _spec(config, text_column, label_column)
        found = open_services(migrate=True)  # the name's owner is in the database
        return uploads.register_as_operator(
            found.settings, found.db, name=name, file=file, user=getpass.getuser(), spec=spec
        )

    try:
        result = run()
    except service.DatasetInvalid as err:
        if as_json:
            _print_json({"registered": False, "report": err.report.to_dict()})
        else:
            _print_report(err.report)
            err_console.print(f"[bold red]not registered:[/bold red] {file} has errors")
        raise typer.Exit(2) from None
    except LoralabError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}")
        raise typer.Exit(2) from None
    version = result.version
    if as_json:
        _print_json({"registered": True, "created": result.created, **version.to_dict()})
        return
    state = "registered" if result.created else "already registered (same content)"
    console.print(
        f"[bold]{version.ref}[/bold] {state}: {version.rows} rows, fingerprint "
        f"{version.fingerprint[:12]}, {result.report.warning_count} warnings"
    )
    console.print(f"train on it: loralab train CONFIG train_file={version.ref}")


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def _print_table(
    title: str, columns: list[tuple[str, str]], rows: list[list[str]], *, keys: int
) -> None:
    """A table whose first ``keys`` columns (names, versions, fingerprints: what users type
    next) are never cut or wrapped; the others fold, and the last ones are dropped while the
    keys would not fit the terminal. ``columns``: (name, justify) pairs, least important last."""
    shown = len(columns)
    while shown > keys + 1 and _needed(columns[:shown], rows, keys) > console.width:
        shown -= 1
    table = Table(title=title)
    for i, (name, justify) in enumerate(columns[:shown]):
        if i < keys:
            width = max([len(name), *(len(row[i]) for row in rows)])
            table.add_column(name, no_wrap=True, min_width=width, justify=justify)  # type: ignore[arg-type]
        else:
            table.add_column(name, overflow="fold", justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(escape(cell) for cell in row[:shown]))
    console.print(table)


def _needed(columns: list[tuple[str, str]], rows: list[list[str]], keys: int) -> int:
    """Keys at full width, other columns at a few characters, plus borders and padding."""
    widths = [
        max([len(name), *(len(row[i]) for row in rows)]) for i, (name, _) in enumerate(columns)
    ]
    return sum(w if i < keys else min(w, 6) for i, w in enumerate(widths)) + 3 * len(columns) + 1


@data_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """Every registered dataset with its latest version."""
    from loralab.datasets import service

    found = guard(lambda: service.list_datasets(load_settings()))
    if as_json:
        _print_json([{k: v for k, v in x.to_dict().items() if k != "report"} for x in found])
        return
    if not found:
        console.print("no datasets registered yet: loralab data register NAME FILE")
        return
    columns = [("dataset", "left"), ("rows", "right"), ("labels", "left")]
    columns += [("registered by", "left"), ("at", "left")]
    rows = [
        [v.ref, str(v.rows), _labels(v.label_counts), v.registered_by, _when(v.registered_at)]
        for v in found
    ]
    _print_table("registered datasets (latest versions)", columns, rows, keys=1)


def _labels(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in counts.items())


@data_app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: JsonFlag = False,
) -> None:
    """Every version of a dataset, oldest first."""
    from loralab.datasets import service

    found = guard(lambda: service.list_versions(load_settings(), name))
    if as_json:
        _print_json([{k: v for k, v in x.to_dict().items() if k != "report"} for x in found])
        return
    columns = [("version", "left"), ("fingerprint", "left"), ("rows", "right")]
    columns += [("labels", "left"), ("registered by", "left"), ("at", "left"), ("source", "left")]
    rows = [
        [
            v.ref,
            v.fingerprint[:12],
            str(v.rows),
            _labels(v.label_counts),
            v.registered_by,
            _when(v.registered_at),
            v.source,
        ]
        for v in found
    ]
    _print_table(f"dataset {name}", columns, rows, keys=2)


@data_app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@latest.")],
    as_json: JsonFlag = False,
) -> None:
    """One version: fingerprint, rows, labels, who registered it, and its validation report."""
    from loralab.datasets import service

    settings = load_settings()
    version = guard(lambda: service.show_version(settings, ref))
    if as_json:
        _print_json(
            {**version.to_dict(), "file": str(service.store_for(settings).file_of(version))}
        )
        return
    # one "field: value" line each, never a table cell: the terminal wraps a long value but
    # nothing is cut, so the full fingerprint and path can be copied at any width
    console.print(f"[bold]{escape(version.ref)}[/bold]", soft_wrap=True)
    report = version.report
    for field, value in (
        ("fingerprint", version.fingerprint),
        ("rows", version.rows),
        ("labels", ", ".join(f"{k}: {n}" for k, n in version.label_counts.items())),
        ("registered by", version.registered_by),
        ("registered at", _when(version.registered_at)),
        ("source", version.source),
        ("columns", f"{version.text_column} / {version.label_column}"),
        ("stored copy", service.store_for(settings).file_of(version)),
        ("validation", f"{report.get('status')}: {report.get('counts')}"),
    ):
        console.print(f"{field}: {escape(str(value))}", soft_wrap=True, highlight=False)


@data_app.command()
def diff(
    old: Annotated[str, typer.Argument(help="NAME@VERSION (before).")],
    new: Annotated[str, typer.Argument(help="NAME@VERSION (after).")],
    limit: Annotated[int, typer.Option(help="Changed rows to list.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Rows added, removed and relabelled between two versions (matched by text)."""
    from loralab.datasets import service

    result = guard(lambda: service.diff_versions(load_settings(), old, new))
    if as_json:
        _print_json(result.to_dict())
        return
    console.print(
        f"{result.old} -> {result.new}: {result.added} added, {result.removed} removed, "
        f"{result.relabelled} relabelled, {result.unchanged} unchanged",
        soft_wrap=True,
    )
    if not result.changes:
        return
    columns = [("change", "left"), ("row before", "right"), ("row after", "right")]
    columns += [("label", "left"), ("text", "left")]
    rows = [
        [c.kind, str(c.row_old or "-"), str(c.row_new or "-"), _change_label(c), c.text[:200]]
        for c in result.changes[:limit]
    ]
    _print_table(f"changed rows (first {limit})", columns, rows, keys=0)


def _change_label(change: Any) -> str:
    if change.kind == "relabelled":
        return f"{change.label_old} -> {change.label_new}"
    return str(change.label_new or change.label_old or "")


@data_app.command()
def analyze(
    source: Annotated[str, typer.Argument(help="Data file or NAME@VERSION.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG plots and report.html.")],
    config: ConfigOption = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    tokenizer: Annotated[
        list[str] | None,
        typer.Option(
            help="Base model whose tokenizer measures token lengths (repeatable). "
            "Default: the recipe's base_model, or minilm-l6."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Label, length (characters and tokens), word, duplicate and language distributions."""
    from loralab.datasets import service

    settings = load_settings()
    result = guard(
        lambda: service.analyze_dataset(
            settings, source, out, _spec(config, text_column, label_column), tokenizer
        )
    )
    if as_json:
        _print_json(
            {"summary": result.summary, "files": {k: str(v) for k, v in result.files.items()}}
        )
        return
    s = result.summary
    console.print(
        f"[bold]{s['name']}[/bold]: {s['rows']} rows, labels {s['labels']}, duplicates "
        f"{s['duplicates']}, near-duplicates {s['near_duplicates']}, conflicting labels "
        f"{s['conflicting_labels']}, languages {s['languages']}"
    )
    for name, stats in s["token_length"].items():
        console.print(
            f"tokens ({name}): {stats} — over max_length {s['max_length']}: {s['truncated'][name]}"
        )
    console.print(f"report: [cyan]{result.files['html']}[/cyan]")
