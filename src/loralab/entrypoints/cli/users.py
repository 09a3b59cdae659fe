"""`loralab users ...`: manage platform accounts as the local operator (thin).

The operator is recorded in the audit log as ``cli:<os user>`` with the admin role. Every
command first brings the database to the newest migration.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from loralab.entrypoints.cli.common import console, err_console, guard
from loralab.settings import load_settings

if TYPE_CHECKING:
    from loralab.identity import Actor, RequestContext
    from loralab.users import UserService

users_app = typer.Typer(help="Manage platform users (as the local operator).", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Username.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
]


def open_users() -> tuple[UserService, Actor]:
    """The user service on the configured (migrated) database, and the operator acting."""
    from loralab.audit import AuditLog
    from loralab.identity import operator_actor
    from loralab.infra.db import Database
    from loralab.infra.migrate import upgrade_database
    from loralab.users import UserService

    settings = load_settings()
    upgrade_database(settings.db_url)
    db = Database(settings.db_url, echo=settings.db.echo)
    return UserService(db, settings.auth, AuditLog(db)), operator_actor(getpass.getuser())


def cli_context() -> RequestContext:
    """Audit context of a CLI command."""
    from loralab.identity import RequestContext

    return RequestContext(client="cli")


def read_password(from_stdin: bool) -> str:
    """The new password: from stdin, or typed twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def create(
    name: NameArg,
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user (prompts for the password twice, hidden)."""
    service, operator = guard(open_users)
    password = read_password(password_stdin)
    role = "admin" if admin else "user"
    view = guard(lambda: service.create_user(name, password, role, operator, cli_context()))
    console.print(f"created {view['role']} [bold]{view['username']}[/bold]")


@users_app.command("list")
def list_() -> None:
    """List every user with role and state."""
    service, operator = guard(open_users)
    users = guard(lambda: service.list_users(operator))
    table = Table(title=f"{len(users)} users")
    for column in ("username", "role", "state", "created"):
        table.add_column(column)
    for user in users:
        state = "[red]disabled[/red]" if user["disabled"] else "active"
        table.add_row(user["username"], user["role"], state, (user["created_at"] or "")[:19])
    console.print(table)


@users_app.command("disable")
def disable(name: NameArg) -> None:
    """Disable a user: sign-in refused, existing tokens revoked."""
    service, operator = guard(open_users)
    guard(lambda: service.set_disabled(operator, name, True, cli_context()))
    console.print(f"disabled [bold]{name}[/bold]")


@users_app.command("enable")
def enable(name: NameArg) -> None:
    """Enable a disabled user again."""
    service, operator = guard(open_users)
    guard(lambda: service.set_disabled(operator, name, False, cli_context()))
    console.print(f"enabled [bold]{name}[/bold]")


@users_app.command("set-role")
def set_role(name: NameArg, role: Annotated[str, typer.Argument(help="admin or user.")]) -> None:
    """Give a user the admin or the user role (revokes their tokens)."""
    service, operator = guard(open_users)
    view = guard(lambda: service.set_role(operator, name, role, cli_context()))
    console.print(f"[bold]{name}[/bold] is now {view['role']}")


@users_app.command("passwd")
def passwd(name: NameArg, password_stdin: PasswordStdin = False) -> None:
    """Reset a user's password (prompts twice, hidden; revokes their tokens)."""
    service, operator = guard(open_users)
    guard(lambda: service.get_user(name))
    password = read_password(password_stdin)
    guard(lambda: service.change_password(operator, name, password, cli_context()))
    err_console.print(f"password of [bold]{name}[/bold] changed; their tokens are revoked")
