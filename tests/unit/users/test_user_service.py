"""UserService on SQLite: accounts, sign-in, revocation, rate limits, last-admin rules."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import SecretStr

from loralab.audit import AuditLog
from loralab.errors import (
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooManyRequests,
)
from loralab.identity import Actor, RequestContext, operator_actor
from loralab.infra.db import Database
from loralab.settings import AuthSettings
from loralab.users import UserService

PW = "a long enough password"
CTX = RequestContext(client="10.0.0.1", request_id="req-1")


class Clock:
    """A settable clock shared by the service and its audit log."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def db(sqlite_db_url: str) -> Database:
    database = Database(sqlite_db_url)
    yield database
    database.dispose()


@pytest.fixture()
def auth() -> AuthSettings:
    return AuthSettings(
        secret_key=SecretStr("k" * 48), login_max_failures=3, login_window_seconds=60
    )


@pytest.fixture()
def audit(db: Database, clock: Clock) -> AuditLog:
    return AuditLog(db, clock=clock)


@pytest.fixture()
def svc(db: Database, auth: AuthSettings, audit: AuditLog, clock: Clock) -> UserService:
    return UserService(db, auth, audit, clock=clock)


@pytest.fixture()
def admin(svc: UserService) -> Actor:
    svc.create_user("root", PW, role="admin")
    token, _ = svc.login("root", PW, CTX)
    return svc.authenticate(token)


def test_create_login_authenticate(svc: UserService, audit: AuditLog, admin: Actor) -> None:
    view = svc.create_user("alice", PW, actor=admin, ctx=CTX)
    assert view.role == "user" and not view.disabled
    shown = asdict(view)
    assert "password_hash" not in shown and not any(PW in str(v) for v in shown.values())
    token, user = svc.login("alice", PW, CTX)
    assert user == svc.get_user("alice")
    actor = svc.authenticate(token)
    assert (actor.username, actor.role, actor.is_admin) == ("alice", "user", False)
    rows, _ = audit.query(action="user.create")
    assert rows[0].target == "alice" and rows[0].username == "root"
    assert rows[0].client == "10.0.0.1" and rows[0].request_id == "req-1"
    assert audit.verify().ok


def test_every_sign_in_attempt_is_audited_with_one_message(
    svc: UserService, audit: AuditLog, admin: Actor
) -> None:
    svc.create_user("alice", PW, actor=admin)
    with pytest.raises(NotAuthenticated) as unknown:
        svc.login("nobody", PW, CTX)
    with pytest.raises(NotAuthenticated) as wrong:
        svc.login("alice", PW + "x", CTX)
    svc.set_disabled(admin, "alice", True)
    with pytest.raises(NotAuthenticated) as disabled:
        svc.login("alice", PW, CTX)
    assert str(unknown.value) == str(wrong.value) == str(disabled.value)
    assert str(unknown.value) == "invalid username or password"
    rows, total = audit.query(action="login")
    assert total == 4  # root's sign-in in the fixture, then three denied
    assert [r.outcome for r in rows[:3]] == ["denied"] * 3
    assert [r.detail["reason"] for r in rows[:3]] == ["disabled", "wrong password",
                                                         "unknown user"]  # fmt: skip
    assert all(PW not in str(r) for r in rows)


def test_failed_sign_ins_are_rate_limited(
    svc: UserService, audit: AuditLog, admin: Actor, clock: Clock
) -> None:
    svc.create_user("alice", PW, actor=admin)
    start = clock.now
    for second in range(3):
        clock.now = start + timedelta(seconds=second * 10)
        with pytest.raises(NotAuthenticated):
            svc.login("alice", "wrong password!", CTX)
    clock.now = start + timedelta(seconds=25)
    with pytest.raises(TooManyRequests) as limited:
        svc.login("alice", PW, CTX)  # even the right password waits
    assert limited.value.retry_after == 35  # the first failure leaves the window at 60 s
    # another address is not limited by these failures
    svc.login("alice", PW, RequestContext(client="10.0.0.2"))
    clock.now = start + timedelta(seconds=61)
    svc.login("alice", PW, CTX)
    assert audit.query(action="login.throttled")[1] == 1


def test_tokens_are_revoked_by_password_role_and_disable(svc: UserService, admin: Actor) -> None:
    svc.create_user("alice", PW, actor=admin)
    changes = [
        lambda: svc.change_password(admin, "alice", PW + "2"),
        lambda: svc.set_role(admin, "alice", "admin"),
        lambda: svc.set_disabled(admin, "alice", True),
    ]
    passwords = [PW, PW + "2", PW + "2"]
    for change, password in zip(changes, passwords, strict=True):
        token, _ = svc.login("alice", password, CTX)
        svc.authenticate(token)
        change()
        with pytest.raises(NotAuthenticated):
            svc.authenticate(token)


def test_own_password_change_needs_the_old_one(
    svc: UserService, admin: Actor, audit: AuditLog
) -> None:
    svc.create_user("alice", PW, actor=admin)
    alice = svc.authenticate(svc.login("alice", PW, CTX)[0])
    with pytest.raises(PermissionDenied):
        svc.change_password(alice, "alice", PW + "new", CTX)
    with pytest.raises(PermissionDenied):
        svc.change_password(alice, "alice", PW + "new", CTX, old_password="wrong one!!!")
    svc.login("alice", PW, RequestContext(client="10.0.0.9"))  # unchanged
    svc.change_password(alice, "alice", PW + "new", CTX, old_password=PW)
    svc.login("alice", PW + "new", RequestContext(client="10.0.0.9"))
    with pytest.raises(PermissionDenied):
        svc.change_password(alice, "root", PW + "new")  # not an admin
    assert audit.query(action="user.password")[1] == 4  # 3 denied + 1 allowed


def test_admin_only_operations(svc: UserService, admin: Actor, audit: AuditLog) -> None:
    svc.create_user("alice", PW, actor=admin)
    alice = svc.authenticate(svc.login("alice", PW, CTX)[0])
    for attempt in (
        lambda: svc.create_user("bob", PW, actor=alice),
        lambda: svc.set_role(alice, "alice", "admin"),
        lambda: svc.set_disabled(alice, "root", True),
        lambda: svc.list_users(alice),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert [u.username for u in svc.list_users(admin)] == ["alice", "root"]
    assert svc.get_user("alice").role == "user"
    denied = [r for r in audit.query(limit=100)[0] if r.outcome == "denied"]
    assert {r.action for r in denied} == {"user.create", "user.role", "user.disable",
                                             "user.list"}  # fmt: skip


def test_last_admin_is_protected(svc: UserService, admin: Actor) -> None:
    with pytest.raises(Conflict, match="last admin"):
        svc.set_role(admin, "root", "user")
    with pytest.raises(Conflict, match="last active admin"):
        svc.set_disabled(admin, "root", True)
    svc.create_user("second", PW, role="admin", actor=admin)
    svc.set_disabled(admin, "second", True)  # a disabled admin does not count
    with pytest.raises(Conflict):
        svc.set_role(admin, "root", "user")
    svc.set_disabled(admin, "second", False)
    svc.set_role(admin, "root", "user")
    assert svc.get_user("root").role == "user"


@pytest.mark.parametrize(
    ("username", "password", "role", "field"),
    [
        ("ab", PW, "user", "username"),
        ("x" * 65, PW, "user", "username"),
        ("has space", PW, "user", "username"),
        ("semi;colon", PW, "user", "username"),
        ("fine_name", "short", "user", "password"),
        ("fine_name", "p" * 257, "user", "password"),
        ("fine_name", PW, "root", "role"),
    ],
)
def test_bad_input_names_the_field(
    svc: UserService, username: str, password: str, role: str, field: str
) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}:"):
        svc.create_user(username, password, role=role)
    with pytest.raises(NotFound):
        svc.get_user(username)


def test_duplicate_user_conflicts(svc: UserService) -> None:
    svc.create_user("alice", PW)
    with pytest.raises(Conflict):
        svc.create_user("alice", PW + "x")


def test_cli_operator_acts_as_admin(svc: UserService, audit: AuditLog) -> None:
    operator = operator_actor("bob")
    svc.create_user("alice", PW, actor=operator)
    svc.set_role(operator, "alice", "admin")
    svc.change_password(operator, "alice", PW + "reset")
    row = audit.query(action="user.role")[0][0]
    assert (row.username, row.role) == ("cli:bob", "admin")


def test_bootstrap_admin_is_idempotent(svc: UserService, auth: AuthSettings) -> None:
    assert svc.bootstrap_admin() is None  # not configured
    boot = auth.model_copy(update={"bootstrap_admin": "boss",
                                   "bootstrap_password": SecretStr(PW)})  # fmt: skip
    created = svc.bootstrap_admin(boot)
    assert created is not None and created.role == "admin"
    assert svc.bootstrap_admin(boot) is None
    assert svc.authenticate(svc.login("boss", PW, CTX)[0]).is_admin
    nopw = auth.model_copy(update={"bootstrap_admin": "boss2", "bootstrap_password": None})
    with pytest.raises(InvalidInput, match="bootstrap_password"):
        svc.bootstrap_admin(nopw)
