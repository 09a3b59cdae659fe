"""What every CLI module shares: the consoles, the error guard, the services, and output that
never cuts an identifier (tables, ``--json``) nor lets stored text drive the terminal."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from loralab.errors import LoralabError

if TYPE_CHECKING:
    from loralab.bootstrap import Services

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def guard(action: Callable[[], T]) -> T:
    """Run an action; a domain error becomes one clear line and exit code 2, a training
    failure one line and exit code 1."""
    from loralab.training.errors import TrainingFailed

    try:
        return action()
    except LoralabError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}")
        raise typer.Exit(2) from None
    except TrainingFailed as err:
        err_console.print(f"[bold red]training failed:[/bold red] {err}")
        raise typer.Exit(1) from None


def open_services(*, migrate: bool = False) -> Services:
    """The platform's services for the configured settings (each built when first used).

    ``migrate``: first bring the database to the newest migration (commands that use it).
    """
    from loralab.bootstrap import build_services
    from loralab.settings import load_settings

    settings = load_settings()
    # the database registry backend keeps the cards in the database: it must be there too
    if migrate or settings.registry_backend == "database":
        from loralab.bootstrap import prepare_database

        prepare_database(settings)
    return build_services(settings)


_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def safe(value: object) -> str:
    """Stored text as one inert line: control and format characters (terminal escapes,
    newlines, bidi overrides) shown as ``\\xNN`` escapes, rich markup escaped."""
    text = "-" if value is None else str(value)
    shown = "".join(
        _CONTROL.get(ch) or (ch.encode("unicode_escape").decode("ascii") if _is_control(ch) else ch)
        for ch in text
    )
    return escape(shown)


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}


def print_json(data: object) -> None:
    """Plain JSON on stdout (no colours, no wrapping): for scripts and pipes."""
    print(json.dumps(data, default=_plain))  # ASCII: escapes are \u sequences, never raw


def _plain(value: object) -> object:
    """Dataclasses as dicts; anything else JSON cannot write (paths, times) as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


@dataclass(frozen=True)
class Column:
    """A table column. ``key``: an identifier users type next (run id, username, model ref):
    never wrapped or cut. Other columns fold, and the ``droppable`` ones go first when the
    terminal is narrow."""

    name: str
    key: bool = False
    droppable: bool = False
    justify: Literal["left", "right"] = "left"


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` (rich markup, stored text already passed through :func:`safe`) so that
    key columns always show in full: drop droppable columns while the keys do not fit, and
    print one ``name: value`` block per row when even that is too narrow."""
    shown = list(range(len(columns)))
    while _needed_width(columns, rows, shown) > console.width:
        droppable = [i for i in shown if columns[i].droppable]
        if not droppable:
            _print_records(title, columns, rows)
            return
        shown.remove(droppable[-1])
    table = Table(title=title)
    for i in shown:
        column = columns[i]
        width = _widest(column, rows, i) if column.key else None
        table.add_column(
            column.name, justify=column.justify, no_wrap=column.key, min_width=width,
            overflow="fold",
        )  # fmt: skip
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)


def _widest(column: Column, rows: Sequence[Sequence[str]], index: int) -> int:
    cells = [Text.from_markup(row[index]).cell_len for row in rows]
    return max([len(column.name), *cells])


def _needed_width(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], shown: list[int]
) -> int:
    """Keys at full width, other columns at least a few characters, plus borders."""
    content = sum(
        _widest(columns[i], rows, i) if columns[i].key else min(6, _widest(columns[i], rows, i))
        for i in shown
    )
    return content + 3 * len(shown) + 1


def _print_records(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    console.print(f"[bold]{escape(title)}[/bold]")
    for row in rows:
        console.print()
        for column, cell in zip(columns, row, strict=True):
            console.print(f"{column.name}: {cell}", soft_wrap=True)
