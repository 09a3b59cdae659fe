"""What every CLI module shares: the consoles and the error guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from loralab.errors import LoralabError

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
