"""`loralab audit ...`: check and read the hash-chained audit log (thin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from loralab.entrypoints.cli.common import console, err_console, guard
from loralab.settings import load_settings

if TYPE_CHECKING:
    from loralab.audit import AuditLog

audit_app = typer.Typer(help="Verify and read the audit log.", no_args_is_help=True)


def open_audit() -> AuditLog:
    """The audit log of the configured (migrated) database."""
    from loralab.audit import AuditLog
    from loralab.infra.db import Database
    from loralab.infra.migrate import upgrade_database

    settings = load_settings()
    upgrade_database(settings.db_url)
    return AuditLog(Database(settings.db_url, echo=settings.db.echo))


@audit_app.command("verify")
def verify() -> None:
    """Check the hash chain: exit 0 when intact, 1 at the first altered or missing record."""
    result = guard(lambda: open_audit().verify())
    if result.ok:
        console.print(f"[green]audit chain OK[/green]: {result.checked} records")
        return
    err_console.print(
        f"[bold red]audit chain BROKEN[/bold red] at record {result.first_bad_id}: "
        f"{result.problem} ({result.checked} records before it are intact)"
    )
    raise typer.Exit(1)


@audit_app.command("list")
def list_(
    user: Annotated[str | None, typer.Option("--user", help="Only this username.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action, e.g. login.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Most rows.")] = 50,
) -> None:
    """The newest audit records as a table."""
    rows, total = guard(lambda: open_audit().query(username=user, action=action, limit=limit))
    table = Table(title=f"audit log: {len(rows)} of {total} records, newest first")
    for column in ("id", "at (UTC)", "user", "role", "action", "target", "outcome", "client"):
        table.add_column(column, overflow="fold")
    for row in rows:
        colour = {"allowed": "green", "denied": "red"}.get(row["outcome"], "yellow")
        table.add_row(
            str(row["id"]), row["at"][:19].replace("T", " "), row["username"] or "-",
            row["role"] or "-", row["action"], row["target"] or "-",
            f"[{colour}]{row['outcome']}[/{colour}]", row["client"] or "-",
        )  # fmt: skip
    console.print(table)
