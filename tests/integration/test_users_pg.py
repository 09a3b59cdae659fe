"""UserService on a real PostgreSQL database migrated by upgrade_database."""

from __future__ import annotations

import secrets
import threading

import pytest
from pydantic import SecretStr

from loralab.audit import AuditLog
from loralab.errors import Conflict, NotAuthenticated, TooManyRequests
from loralab.identity import RequestContext, operator_actor
from loralab.infra.db import Database
from loralab.infra.migrate import current_revision, head_revision
from loralab.settings import AuthSettings
from loralab.users import UserService

pytestmark = [pytest.mark.integration]
PW = "a long enough password"


@pytest.fixture()
def service(pg_db_url: str) -> UserService:
    db = Database(pg_db_url)
    auth = AuthSettings(secret_key=SecretStr("p" * 48), login_max_failures=2)
    yield UserService(db, auth, AuditLog(db))
    db.dispose()


def name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def test_database_is_migrated(pg_db_url: str) -> None:
    assert current_revision(pg_db_url) == head_revision()


def test_create_login_revoke(service: UserService) -> None:
    operator = operator_actor("tester")
    alice = name("alice")
    service.create_user(alice, PW, actor=operator)
    with pytest.raises(Conflict):
        service.create_user(alice, PW, actor=operator)
    token, view = service.login(alice, PW, RequestContext(client="192.0.2.1"))
    assert service.authenticate(token).username == alice == view.username
    service.change_password(operator, alice, PW + "!")
    with pytest.raises(NotAuthenticated):
        service.authenticate(token)
    token, _ = service.login(alice, PW + "!", RequestContext(client="192.0.2.1"))
    service.set_disabled(operator, alice, True)
    with pytest.raises(NotAuthenticated):
        service.authenticate(token)


def test_rate_limit_counts_on_postgres(service: UserService) -> None:
    bob = name("bob")
    service.create_user(bob, PW)
    ctx = RequestContext(client="192.0.2.7")
    for _ in range(2):
        with pytest.raises(NotAuthenticated):
            service.login(bob, "wrong password!!", ctx)
    with pytest.raises(TooManyRequests) as limited:
        service.login(bob, PW, ctx)
    assert limited.value.retry_after is not None and 290 <= limited.value.retry_after <= 300


def test_concurrent_demotions_keep_one_admin(service: UserService, pg_db_url: str) -> None:
    """The last two admins demoted at once: one wins, the other gets Conflict."""
    operator = operator_actor("tester")
    first, second = name("adm"), name("adm")
    for admin in (first, second):
        service.create_user(admin, PW, role="admin", actor=operator)
    for user in service.list_users(operator):  # other tests' admins step down
        if user.role == "admin" and user.username not in (first, second):
            service.set_role(operator, user.username, "user")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def demote(username: str) -> None:
        barrier.wait()
        try:
            service.set_role(operator, username, "user")
            outcomes.append("done")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=demote, args=(n,)) for n in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "done"]
    roles = {service.get_user(n).role for n in (first, second)}
    assert roles == {"admin", "user"}
    db = Database(pg_db_url)
    assert AuditLog(db).verify().ok
    db.dispose()
