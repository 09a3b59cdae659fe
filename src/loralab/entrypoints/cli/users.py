"""`loralab users ...`: manage platform accounts as the local operator (thin).

The operator is recorded in the audit log as ``cli:<os user>`` with the admin role. Every
command first brings the database to the newest migration.
"""

from __future__ import annotations

import getpass
import sys
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
    from loralab.identity import Actor, RequestContext
    from loralab.users import UserService

users_app = typer.Typer(help="Manage platform users (as the local operator).", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Username.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print plain JSON.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
]


def open_users() -> tuple[UserService, Actor]:
    """The user service on the configured (migrated) database, and the operator acting."""
    from loralab.identity import operator_actor

    return open_services(migrate=True).users, operator_actor(getpass.getuser())


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
    console.print(f"created {view.role} [bold]{safe(view.username)}[/bold]")


@users_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """List every user with role and state."""
    service, operator = guard(open_users)
    users = guard(lambda: service.list_users(operator))
    if as_json:
        print_json(users)
        return
    columns = (Column("username", key=True), Column("role"), Column("state"),
               Column("created", droppable=True))  # fmt: skip
    rows = [
        [
            safe(user.username),
            safe(user.role),
            "[red]disabled[/red]" if user.disabled else "active",
            safe((user.created_at or "")[:19].replace("T", " ")),
        ]
        for user in users
    ]
    print_table(f"{len(users)} users", columns, rows)


@users_app.command("disable")
def disable(name: NameArg) -> None:
    """Disable a user: sign-in refused, existing tokens revoked."""
    service, operator = guard(open_users)
    guard(lambda: service.set_disabled(operator, name, True, cli_context()))
    console.print(f"disabled [bold]{safe(name)}[/bold]")


@users_app.command("enable")
def enable(name: NameArg) -> None:
    """Enable a disabled user again."""
    service, operator = guard(open_users)
    guard(lambda: service.set_disabled(operator, name, False, cli_context()))
    console.print(f"enabled [bold]{safe(name)}[/bold]")


@users_app.command("set-role")
def set_role(name: NameArg, role: Annotated[str, typer.Argument(help="admin or user.")]) -> None:
    """Give a user the admin or the user role (revokes their tokens)."""
    service, operator = guard(open_users)
    view = guard(lambda: service.set_role(operator, name, role, cli_context()))
    console.print(f"[bold]{safe(name)}[/bold] is now {view.role}")


@users_app.command("passwd")
def passwd(name: NameArg, password_stdin: PasswordStdin = False) -> None:
    """Reset a user's password (prompts twice, hidden; revokes their tokens)."""
    service, operator = guard(open_users)
    guard(lambda: service.get_user(name))
    password = read_password(password_stdin)
    guard(lambda: service.change_password(operator, name, password, cli_context()))
    err_console.print(f"password of [bold]{safe(name)}[/bold] changed; their tokens are revoked")
