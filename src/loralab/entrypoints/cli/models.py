"""`loralab models ...`: list, search, recommend, show, card, promote, history, reconcile (thin)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from rich.table import Table

from loralab.entrypoints.cli.common import console, guard, open_services
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
    table = Table(title=title)
    for column in ("model", "stage", "base model", "lang", "task", "accuracy", "dataset"):
        table.add_column(column)
    if scores is not None:
        table.add_column("score")
        table.add_column("why")
    for i, card in enumerate(cards):
        acc = card.metrics.get("accuracy")
        row = [
            card.ref,
            card.stage.value,
            card.base_model,
            card.language,
            card.task,
            "" if acc is None else f"{acc:.4f}",
            card.dataset.name + (f"@{card.dataset.version}" if card.dataset.version else ""),
        ]
        if scores is not None:
            row += [f"{scores[i].score:.3f}", "; ".join(scores[i].reasons)]
        table.add_row(*row)
    console.print(table)


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
        print(
            json.dumps(
                {
                    "total": page.total,
                    "offset": page.offset,
                    "limit": page.limit,
                    "items": [_summary(c) for c in page.items],
                },
                indent=1,
            )
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
        if sum(x is not None for x in (need, like, dataset)) != 1:
            raise InvalidInput("give exactly one of: a NEED text, --like NAME@VERSION, --dataset")
        service = _service()
        start = start_from = None
        if need is not None:
            results = service.recommend_text(need, limit)
        elif like is not None:
            results = service.recommend_similar(like, limit)
        else:
            found = service.recommend_for_registered_dataset(str(dataset), limit)
            results, start, start_from = (
                found.results,
                found.starting_point,
                found.starting_point_from,
            )
        if as_json:
            print(
                json.dumps(
                    {
                        "results": [
                            {**_summary(r.card), "score": r.score, "reasons": r.reasons}
                            for r in results
                        ],
                        "starting_point": start,
                        "starting_point_from": start_from,
                    },
                    indent=1,
                )
            )
            return
        _cards_table([r.card for r in results], "recommended models", results)
        if start is not None:
            console.print(f"starting point (settings of {start_from}): {json.dumps(start)}")

    guard(act)


@models_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")]) -> None:
    """A model's versions and stages, or one version's summary."""

    def act() -> None:
        from loralab.errors import NotFound
        from loralab.registry.search import SearchQuery

        service = _service()
        if "@" in ref:
            card = service.get_card(ref)
            console.print_json(
                json.dumps(
                    {
                        **_summary(card),
                        "labels": card.labels,
                        "description": card.description,
                        "tags": card.tags,
                        "lora": card.lora.model_dump(),
                        "training": card.training,
                    }
                )
            )
            return
        page = service.search(SearchQuery(name=ref, sort="version", limit=100))
        if not page.total:
            raise NotFound(f"no registered model {ref!r}")
        _cards_table(page.items, f"{ref}: {page.total} version(s)")

    guard(act)


@models_app.command("card")
def card(ref: Annotated[str, typer.Argument(help="NAME@VERSION.")]) -> None:
    """Print the model card (JSON)."""
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
def history(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Every stage transition of a model: who, when, from, to, why."""
    entries = guard(lambda: _service().history(name))
    table = Table(title=f"{name}: stage history")
    for column in ("when (UTC)", "version", "from", "to", "by", "reason"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            _when(e.at),
            e.version,
            e.from_stage.value if e.from_stage else "new",
            e.to_stage.value,
            e.by,
            e.reason,
        )
    console.print(table)


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
