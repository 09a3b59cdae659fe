"""`loralab users ...` and `loralab audit ...` against a SQLite database."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from loralab.audit import AuditLog
from loralab.entrypoints.cli import common
from loralab.entrypoints.cli.audit import audit_app
from loralab.entrypoints.cli.users import users_app
from loralab.infra.db import Database
from loralab.infra.migrate import current_revision, head_revision

pytestmark = [pytest.mark.integration]
runner = CliRunner()
PW = "a long enough password"


@pytest.fixture()
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'fresh' / 'loralab.db'}"
    monkeypatch.setenv("LORALAB_DB__URL", url)
    monkeypatch.chdir(tmp_path)
    return url


@pytest.fixture(autouse=True)
def narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """80 columns, as in a small terminal or a pipe."""
    monkeypatch.setattr(common.console, "_width", 80)
    yield


def users(*args: str, input: str | None = None) -> object:
    return runner.invoke(users_app, list(args), input=input, catch_exceptions=False)


def audit(*args: str) -> object:
    return runner.invoke(audit_app, list(args), catch_exceptions=False)


def test_create_prompts_twice_and_migrates_first(db_url: str) -> None:
    assert current_revision(db_url) is None
    result = users("create", "alice", "--admin", input=f"{PW}\n{PW}\n")
    assert result.exit_code == 0, result.output
    assert current_revision(db_url) == head_revision()
    assert "created admin alice" in result.output
    assert PW not in result.output  # hidden input
    listing = users("list")
    assert "alice" in listing.output and "admin" in listing.output


def test_mismatched_confirmation_asks_again(db_url: str) -> None:
    result = users("create", "bob", input=f"{PW}\nother password!\n{PW}\n{PW}\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower()


def test_state_changes_and_errors(db_url: str) -> None:
    assert users("create", "root", "--admin", "--password-stdin", input=PW + "\n").exit_code == 0
    assert users("create", "carol", "--password-stdin", input=PW + "\n").exit_code == 0
    duplicate = users("create", "carol", "--password-stdin", input=PW + "\n")
    assert duplicate.exit_code == 2 and "already exists" in duplicate.output
    short = users("create", "dave", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "password:" in short.output
    assert users("set-role", "carol", "admin").exit_code == 0
    assert users("disable", "carol").exit_code == 0
    assert "disabled" in users("list").output
    assert users("enable", "carol").exit_code == 0
    assert users("passwd", "carol", "--password-stdin", input=PW + "2\n").exit_code == 0
    last = users("set-role", "root", "user")
    assert last.exit_code == 0  # carol is an admin too
    refused = users("set-role", "carol", "user")
    assert refused.exit_code == 2 and "last admin" in refused.output
    assert users("set-role", "carol", "boss").exit_code == 2
    assert users("disable", "nobody").exit_code == 2


def test_audit_list_and_verify(db_url: str) -> None:
    users("create", "erin", "--password-stdin", input=PW + "\n")
    users("disable", "erin")
    listing = audit("list", "--action", "user.disable")
    assert listing.exit_code == 0
    assert f"cli:{getpass.getuser()}" in listing.output and "erin" in listing.output
    assert "1 of 1" in listing.output
    ok = audit("verify")
    assert ok.exit_code == 0 and "audit chain OK: 2 records" in ok.output
    db = Database(db_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target = 'mallory' WHERE id = 1"))
    db.dispose()
    broken = audit("verify")
    assert broken.exit_code == 1
    assert "record 1" in broken.output and "altered" in broken.output


def test_main_app_wires_users_and_audit() -> None:
    from loralab.entrypoints.cli.main import app

    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "users" in result.output and "audit" in result.output


LONG_NAME = "a-rather-long-user-name.for-the-table_0123456789-abcdefghijklmnopqrstuv"[:64]


def test_lists_keep_identifiers_whole_at_80_columns_and_json_parses(db_url: str) -> None:
    assert users("create", LONG_NAME, "--admin", "--password-stdin", input=PW + "\n").exit_code == 0
    listing = users("list")
    assert listing.exit_code == 0 and LONG_NAME in listing.output
    assert max(len(line) for line in listing.output.splitlines()) <= 80
    as_json = json.loads(users("list", "--json").output)
    assert [u["username"] for u in as_json] == [LONG_NAME] and "password_hash" not in as_json[0]
    records = audit("list")
    assert records.exit_code == 0 and LONG_NAME in records.output
    assert max(len(line) for line in records.output.splitlines()) <= 80
    entries = json.loads(audit("list", "--json").output)
    assert entries["total"] == 1 and entries["records"][0]["target"].endswith(LONG_NAME)


def test_audit_list_shows_attacker_text_inert(db_url: str) -> None:

    users("create", "frank", "--password-stdin", input=PW + "\n")
    db = Database(db_url)
    evil = "\x1b]0;owned\x07[red]x[/red]\nroot\u202e"
    with db.session() as session:
        AuditLog(db).record(
            session, username=evil, role=None, action="login", outcome="denied",
            target=evil, client="1.2.3.4",
        )  # fmt: skip
    db.dispose()
    listing = audit("list", "--action", "login")
    assert listing.exit_code == 0, listing.output
    assert "\x1b" not in listing.output and "\x07" not in listing.output
    assert "\u202e" not in listing.output and "\n" + "root" not in listing.output
    flat = "".join(listing.output.split())
    assert "\\x1b]0;owned\\x07[red]x[/red]\\nroot" in flat  # shown, escaped, not styled
    raw = json.loads(audit("list", "--action", "login", "--json").output)
    assert raw["records"][0]["username"] == evil
