"""`loralab models ...`: list, search, recommend, show, card, promote, history, reconcile (thin)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from loralab.entrypoints.cli.common import (
    Column,
    console,
    guard,
    open_services,
    print_json,
    print_table,
    safe,
)
from loralab.errors import InvalidInput

TRANSITIONS = (
    "Stages: Staging, Production, Archived (any case, exact spelling). Allowed: new -> Staging, "
    "Staging -> Production, Staging -> Archived, Production -> Archived, Archived -> Staging. "
    "Promoting to Production archives the previous Production."
)
models_app = typer.Typer(
    help="Registered models: cards, stages (on MLflow aliases + tags), search and "
    "recommendation. " + TRANSITIONS,
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Limit = Annotated[int, typer.Option(help="Results per page, 1..100 (more is an error).")]


def _service() -> Any:
    return open_services().registry


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _summary(card: Any) -> dict[str, Any]:
    return {
        "ref": card.ref,
        "stage": card.stage.value,
        "base_model": card.base_model,
        "language": card.language,
        "task": card.task,
        "metrics": card.metrics,
        "dataset": card.dataset.model_dump(),
        "created_by": card.created_by,
        "created_at": card.created_at,
    }


def _cards_table(cards: list[Any], title: str, scores: list[Any] | None = None) -> None:
    """Model refs, stages and dataset versions in full; on a narrow terminal the other columns
    fold, and the reasons, accuracy, task, language and base model go (in that order)."""
    columns = [
        Column("model", key=True),
        Column("stage", key=True),
        Column("base model", droppable=True),
        Column("lang", droppable=True),
        Column("task", droppable=True),
        Column("accuracy", droppable=True, justify="right"),
        Column("dataset", key=True),
    ]
    if scores is not None:
        columns += [Column("score", justify="right"), Column("why", droppable=True)]
    rows = []
    for i, card in enumerate(cards):
        acc = card.metrics.get("accuracy")
        dataset = card.dataset.name + (f"@{card.dataset.version}" if card.dataset.version else "")
        row = [
            card.ref,
            card.stage.value,
            safe(card.base_model),
            safe(card.language),
            safe(card.task),
            "" if acc is None else f"{acc:.4f}",
            safe(dataset),
        ]
        if scores is not None:
            row += [f"{scores[i].score:.3f}", safe("; ".join(scores[i].reasons))]
        rows.append(row)
    print_table(title, columns, rows)


def _parse_pairs(values: list[str], what: str, numeric: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or (numeric and not sep):
            raise InvalidInput(f"{what} must be KEY=VALUE, not {item!r}")
        if numeric:
            try:
                out[key] = float(value)
            except ValueError:
                raise InvalidInput(f"{what} {item!r}: {value!r} is not a number") from None
        else:
            out[key] = value if sep else None
    return out


def _search(
    name: str | None,
    base_model: str | None,
    language: str | None,
    task: str | None,
    stage: str | None,
    tag: list[str],
    min_metric: list[str],
    sort: str,
    ascending: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    from loralab.registry.search import SearchQuery

    query = SearchQuery(
        name=name,
        base_model=base_model,
        language=language,
        task=task,
        stage=stage,
        tags=_parse_pairs(tag, "--tag"),
        min_metrics=_parse_pairs(min_metric, "--min-metric", numeric=True),
        sort=sort,
        descending=not ascending,
        limit=limit,
        offset=offset,
    )
    page = _service().search(query)
    if as_json:
        print_json(
            {
                "total": page.total,
                "offset": page.offset,
                "limit": page.limit,
                "items": [_summary(c) for c in page.items],
            }
        )
        return
    end = page.offset + len(page.items)
    _cards_table(page.items, f"models {page.offset + 1 if page.items else 0}-{end} of {page.total}")


@models_app.command("list")
def list_models(
    stage: Annotated[str | None, typer.Option(help="Only this stage.")] = None,
    limit: Limit = 20,
    offset: Annotated[int, typer.Option(help="Skip this many.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Registered model versions, newest first."""
    guard(
        lambda: _search(
            None, None, None, None, stage, [], [], "created_at", False, limit, offset, as_json
        )
    )


@models_app.command("search")
def search_models(
    name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model (exact, any case).")] = None,
    language: Annotated[str | None, typer.Option(help="Language, e.g. English.")] = None,
    task: Annotated[str | None, typer.Option(help="Task, e.g. sentiment.")] = None,
    stage: Annotated[str | None, typer.Option(help="Staging, Production or Archived.")] = None,
    tag: Annotated[list[str], typer.Option(help="KEY=VALUE or KEY (repeatable).")] = [],  # noqa: B006
    min_metric: Annotated[
        list[str], typer.Option(help="METRIC=VALUE lowest accepted (repeatable).")
    ] = [],  # noqa: B006
    sort: Annotated[
        str, typer.Option(help="created_at, name, version, stage or metric:<name>.")
    ] = "created_at",
    ascending: Annotated[bool, typer.Option(help="Ascending order (default descending).")] = False,
    limit: Limit = 20,
    offset: Annotated[int, typer.Option(help="Skip this many.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Filter, sort and page through model cards."""
    guard(
        lambda: _search(
            name,
            base_model,
            language,
            task,
            stage,
            tag,
            min_metric,
            sort,
            ascending,
            limit,
            offset,
            as_json,
        )
    )


@models_app.command("recommend")
def recommend(
    need: Annotated[str | None, typer.Argument(help="What you need, in words.")] = None,
    like: Annotated[str | None, typer.Option(help="Models similar to NAME@VERSION.")] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="A registered dataset NAME@VERSION: models trained on "
            "the most similar data, and a starting configuration."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Results, 1..100.")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Recommend models by embedding similarity: give exactly one of NEED, --like, --dataset."""

    def act() -> None:
        found = _service().recommend(text=need, like=like, dataset=dataset, limit=limit)
        if as_json:
            results = [
                {**_summary(r.card), "score": r.score, "reasons": r.reasons} for r in found.results
            ]
            answer = {
                "results": results,
                "starting_point": found.starting_point,
                "starting_point_from": found.starting_point_from,
            }
            print_json(answer)
            return
        _cards_table([r.card for r in found.results], "recommended models", found.results)
        if found.starting_point is not None:
            start = safe(json.dumps(found.starting_point))
            console.print(f"starting point (settings of {found.starting_point_from}): {start}")

    guard(act)


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")], as_json: JsonFlag = False
) -> None:
    """A model's versions and stages, or one version's summary."""

    def act() -> None:
        from loralab.errors import NotFound
        from loralab.registry.search import SearchQuery

        service = _service()
        if "@" in ref:
            card = service.get_card(ref)
            details = {
                **_summary(card),
                "run_id": card.run_id,
                "labels": card.labels,
                "description": card.description,
                "tags": card.tags,
                "lora": card.lora.model_dump(),
                "training": card.training,
            }
            if as_json:
                print_json(details)
            else:
                console.print_json(json.dumps(details))
            return
        page = service.search(SearchQuery(name=ref, sort="version", limit=100))
        if not page.total:
            raise NotFound(f"no registered model {ref!r}")
        if as_json:
            items = [_summary(c) for c in page.items]
            print_json({"name": ref, "total": page.total, "items": items})
            return
        _cards_table(page.items, f"{ref}: {page.total} version(s)")

    guard(act)


@models_app.command("card")
def card(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")], as_json: JsonFlag = False
) -> None:
    """Print the model card (always JSON; ``--json`` is accepted like everywhere else)."""
    print(guard(lambda: _service().get_card(ref)).model_dump_json(indent=1))


@models_app.command(
    "promote", help="Move a version to a stage (default Production). " + TRANSITIONS
)
def promote(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    to: Annotated[str, typer.Option(help="Staging, Production or Archived.")] = "Production",
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "",
    force: Annotated[
        bool, typer.Option(help="Override the promotion gate (needs --reason).")
    ] = False,
    user: Annotated[str | None, typer.Option(help="Who (default: the OS user).")] = None,
) -> None:
    result = guard(lambda: _service().transition(ref, to, user or getpass.getuser(), reason, force))
    console.print(f"{result.card.ref}: {result.from_stage or 'new'} -> {result.to_stage}")
    for other in result.archived:
        console.print(f"{other}: Production -> Archived")


@models_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Registered model name.")], as_json: JsonFlag = False
) -> None:
    """Every stage transition of a model: who, when, from, to, why."""
    changes = guard(lambda: _service().history(name))
    if as_json:
        print_json([c.to_dict() for c in changes])
        return
    columns = [
        Column("when (UTC)", key=True),
        Column("version", key=True),
        Column("from", key=True),
        Column("to", key=True),
        Column("by"),
        Column("reason", droppable=True),
    ]
    rows = [
        [
            _when(c.at),
            c.version,
            c.from_stage.value if c.from_stage else "new",
            c.to_stage.value,
            safe(c.by),
            safe(c.reason),
        ]
        for c in changes
    ]
    print_table(f"{safe(name)}: stage history", columns, rows)


@models_app.command("reconcile")
def reconcile(
    name: Annotated[str | None, typer.Argument(help="One model (default: all).")] = None,
) -> None:
    """Make every card's stage equal MLflow's, and say what changed."""
    changes = guard(lambda: _service().reconcile(name))
    if not changes:
        console.print("cards and registry agree; nothing changed")
    for c in changes:
        console.print(f"{c.ref}: {c.what} {c.old or '-'} -> {c.new or '-'}")
