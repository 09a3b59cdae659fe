"""`loralab audit ...`: check and read the hash-chained audit log (thin).

Stored text (user names, targets, clients) may be chosen by an attacker, e.g. a failed sign-in
as ``"\\x1b]0;owned\\x07"``: it is printed through :func:`~loralab.entrypoints.cli.common.safe`,
so it can neither drive the terminal nor inject rich markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from loralab.entrypoints.cli.common import (
    Column,
    console,
    err_console,
    guard,
    open_services,
    print_json,
    print_table,
    safe,
)

if TYPE_CHECKING:
    from loralab.audit import AuditLog
    from loralab.audit.log import AuditEntry

audit_app = typer.Typer(help="Verify and read the audit log.", no_args_is_help=True)

COLUMNS = (
    Column("id", key=True),
    Column("at (UTC)", droppable=True),
    Column("user", key=True),
    Column("role", droppable=True),
    Column("action"),
    Column("target", key=True),
    Column("outcome"),
    Column("client", droppable=True),
)
COLOURS = {"allowed": "green", "denied": "red"}


def open_audit() -> AuditLog:
    """The audit log of the configured (migrated) database."""
    return open_services(migrate=True).audit


@audit_app.command("verify")
def verify() -> None:
    """Check the hash chain: exit 0 when intact, 1 at the first altered or missing record."""
    result = guard(lambda: open_audit().verify())
    if result.ok:
        console.print(f"[green]audit chain OK[/green]: {result.checked} records")
        return
    err_console.print(
        f"[bold red]audit chain BROKEN[/bold red] at record {result.first_bad_id}: "
        f"{safe(result.problem)} ({result.checked} records before it are intact)"
    )
    raise typer.Exit(1)


@audit_app.command("list")
def list_(
    user: Annotated[str | None, typer.Option("--user", help="Only this username.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action, e.g. login.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Most rows.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print plain JSON.")] = False,
) -> None:
    """The newest audit records as a table."""
    rows, total = guard(lambda: open_audit().query(username=user, action=action, limit=limit))
    if as_json:
        print_json({"total": total, "records": rows})
        return
    print_table(
        f"audit log: {len(rows)} of {total} records, newest first",
        COLUMNS,
        [_cells(row) for row in rows],
    )


def _cells(entry: AuditEntry) -> list[str]:
    """One record as table cells; every stored string passes through ``safe``."""
    colour = COLOURS.get(entry.outcome, "yellow")
    return [
        str(entry.id), safe(entry.at[:19].replace("T", " ")), safe(entry.username or "-"),
        safe(entry.role or "-"), safe(entry.action), safe(entry.target or "-"),
        f"[{colour}]{safe(entry.outcome)}[/{colour}]", safe(entry.client or "-"),
    ]  # fmt: skip
