"""Users, roles and sign-in: the one place that decides who may do what to an account.

Every change of state (create, password, role, disable/enable) and every sign-in attempt
writes an audit record in the same transaction as the change. Password, role and disabled
changes bump ``token_version``, so tokens issued before stop working at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loralab.audit import AuditLog
from loralab.errors import (
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooManyRequests,
)
from loralab.identity import ROLES, SYSTEM, Actor, RequestContext
from loralab.infra.db import Database, User, utcnow
from loralab.infra.locks import LOGIN_LOCK_KEY, USERS_LOCK_KEY, serialise_name, serialise_writes
from loralab.infra.ratelimit import Limits, RateLimiter, limits_of
from loralab.settings import AuthSettings, LimitSettings
from loralab.users.passwords import hash_password, needs_rehash, verify_password
from loralab.users.tokens import decode_token, issue_token

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{3,64}")
PASSWORD_MIN, PASSWORD_MAX = 12, 256
BAD_SIGN_IN = "invalid username or password"


@dataclass(frozen=True)
class UserView:
    """A user as plain data, never with the password hash. Times are ISO 8601 in UTC."""

    id: int
    username: str
    role: str
    disabled: bool
    created_at: str | None
    updated_at: str | None


def user_view(user: User) -> UserView:
    """The view of a user row."""
    return UserView(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at.isoformat() if user.created_at else None,
        updated_at=user.updated_at.isoformat() if user.updated_at else None,
    )


def validate_username(username: str) -> str:
    """The username, or InvalidInput naming the field."""
    if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput("username: 3 to 64 characters of letters, digits, '_', '.' or '-'")
    return username


def validate_password(password: str, field: str = "password") -> str:
    """The password, or InvalidInput naming the field."""
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"{field}: {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return password


def validate_role(role: str) -> str:
    """The role, or InvalidInput naming the field."""
    if role not in ROLES:
        raise InvalidInput(f"role: one of {', '.join(ROLES)}, not {role!r}")
    return role


@cache
def _token_check() -> Select[Any]:
    """The columns a token check needs, as a plain row (a Core select built once): every API
    request asks this, and building an ORM User (identity map, instrumented attributes) and
    the statement cost more than the read."""
    users = cast(Table, User.__table__)
    columns = (users.c.username, users.c.role, users.c.disabled, users.c.token_version)
    return select(*columns).where(users.c.id == bindparam("uid"))


class UserService:
    """Create and change users, sign them in, and turn tokens back into actors."""

    def __init__(
        self,
        db: Database,
        auth: AuthSettings,
        audit: AuditLog,
        clock: Callable[[], datetime] = utcnow,
        limiter: RateLimiter | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._db = db
        self._auth = auth
        self._audit = audit
        self._clock = clock
        self._limiter = limiter
        self._limits = limits or limits_of(LimitSettings())

    # --- audit helpers ---

    def _record(
        self,
        session: Session,
        actor: Actor,
        action: str,
        ctx: RequestContext,
        target: str | None = None,
        outcome: str = "allowed",
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._audit.record_by(
            session, actor, ctx, action=action, outcome=outcome, target=target, detail=detail
        )

    def _deny(self, actor: Actor, action: str, target: str, ctx: RequestContext, why: str) -> None:
        """Record a refused change in its own transaction, then refuse it."""
        with self._db.session() as session:
            self._record(session, actor, action, ctx, target, "denied", {"reason": why})
        raise PermissionDenied(why)

    def _require_admin(self, actor: Actor, action: str, target: str, ctx: RequestContext) -> None:
        if not actor.is_admin:
            self._deny(actor, action, target, ctx, f"{action} needs the admin role")

    @staticmethod
    def _find(session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user named {username!r}")
        return user

    @staticmethod
    def _other_active_admins(session: Session, user: User) -> int:
        stmt = select(func.count(User.id)).where(
            User.role == "admin", User.disabled.is_(False), User.id != user.id
        )
        return session.scalar(stmt) or 0

    # --- accounts ---

    def create_user(
        self,
        username: str,
        password: str,
        role: str = "user",
        actor: Actor | None = None,
        ctx: RequestContext = RequestContext(),
    ) -> UserView:
        """Create a user (admins only; ``actor`` None is the system itself).

        InvalidInput naming the field; Conflict if the name is taken.
        """
        validate_username(username)
        validate_password(password)
        validate_role(role)
        who = actor or SYSTEM
        self._require_admin(who, "user.create", username, ctx)
        password_hash = hash_password(password)
        with self._db.session() as session:
            user = self._insert(session, username, password_hash, role)
            self._record(session, who, "user.create", ctx, username, detail={"role": role})
            return user_view(user)

    @staticmethod
    def _insert(session: Session, username: str, password_hash: str, role: str) -> User:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise Conflict(f"a user named {username!r} already exists")
        user = User(username=username, password_hash=password_hash, role=role)
        session.add(user)
        try:
            session.flush()
        except IntegrityError:  # created by someone else a moment ago
            raise Conflict(f"a user named {username!r} already exists") from None
        return user

    def get_user(self, username: str) -> UserView:
        """One user's view; NotFound if there is none."""
        with self._db.session() as session:
            return user_view(self._find(session, username))

    def list_users(self, actor: Actor) -> list[UserView]:
        """Every user, by name (admins only)."""
        self._require_admin(actor, "user.list", "*", RequestContext())
        with self._db.session() as session:
            return [user_view(u) for u in session.scalars(select(User).order_by(User.username))]

    # --- signing in ---

    def login(
        self, username: str, password: str, ctx: RequestContext = RequestContext()
    ) -> tuple[str, UserView]:
        """A token and the user's view for the right password.

        An unknown user, a wrong password and a disabled user all get the same
        NotAuthenticated; after ``login_max_failures`` failures of this name from this client
        within ``login_window_seconds``, TooManyRequests with ``retry_after`` seconds; so too
        after ``limits.login_failures_per_address`` failures of any names from this client
        (counted in Redis; refused while Redis is unreachable).
        Every attempt is audited (throttled ones as ``login.throttled``, which do not count).

        Attempts sent at once, to any number of API processes, count like attempts sent one
        after another: the attempt is counted against the address before the password is
        checked (and taken back unless it fails), and attempts on one name from one client
        take turns (PostgreSQL; on SQLite those of one process do), so a burst of guesses
        gets no more tries than the limits allow.
        """
        name = username if isinstance(username, str) else ""
        self._reserve_address(name, ctx)
        failed = False
        try:
            with self._db.session() as session:
                serialise_name(session, LOGIN_LOCK_KEY, f"{name}\x00{ctx.client or ''}")
                retry_after = self._retry_after(session, name, ctx)
                if retry_after is not None:
                    anonymous = Actor(id=0, username=name, role="")
                    self._record(session, anonymous, "login.throttled", ctx, name, "denied",
                                 {"retry_after": retry_after})  # fmt: skip
                    result = None
                else:
                    result = self._check_credentials(session, name, password, ctx)
            failed = retry_after is None and result is None
        finally:
            if not failed and self._limiter is not None:
                self._limiter.release(self._limits.login_address, ctx.client or "")
        if retry_after is not None:
            raise TooManyRequests("too many failed sign-ins; try again later", retry_after)
        if result is None:
            raise NotAuthenticated(BAD_SIGN_IN)
        return result

    def _reserve_address(self, name: str, ctx: RequestContext) -> None:
        """Count this attempt against its client now; TooManyRequests (audited, and not
        counted) when the client failed too often, whatever the names."""
        if self._limiter is None:
            return
        try:
            self._limiter.enforce(self._limits.login_address, ctx.client or "")
        except TooManyRequests as err:
            self._limiter.release(self._limits.login_address, ctx.client or "")
            with self._db.session() as session:
                anonymous = Actor(id=0, username=name, role="")
                self._record(session, anonymous, "login.throttled", ctx, name, "denied",
                             {"retry_after": err.retry_after, "by": "address"})  # fmt: skip
            raise

    def _retry_after(self, session: Session, username: str, ctx: RequestContext) -> int | None:
        """Seconds until enough failures leave the window to sign in again; None: not limited."""
        now = self._clock()
        window = timedelta(seconds=self._auth.login_window_seconds)
        failures = self._audit.recent(
            session, action="login", outcome="denied", username=username,
            client=ctx.client, since=now - window,
        )  # fmt: skip
        over = len(failures) - self._auth.login_max_failures
        if over < 0:
            return None
        leaves_at = failures[over] + window
        return max(1, math.ceil((leaves_at - now).total_seconds()))

    def _check_credentials(
        self, session: Session, username: str, password: str, ctx: RequestContext
    ) -> tuple[str, UserView] | None:
        user = session.scalar(select(User).where(User.username == username))
        matched = verify_password(user.password_hash if user else None, password)
        reason = (
            "unknown user" if user is None
            else "wrong password" if not matched
            else "disabled" if user.disabled
            else None
        )  # fmt: skip
        who = Actor(id=0, username=username, role=user.role if user else "")
        if reason is not None or user is None:
            self._record(session, who, "login", ctx, username, "denied", {"reason": reason})
            return None
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        self._record(session, who, "login", ctx, username)
        return issue_token(user, self._auth), user_view(user)

    def authenticate(self, token: str) -> Actor:
        """The actor a token stands for; NotAuthenticated if it is invalid, or its user is
        gone, disabled or changed since it was issued."""
        claims = decode_token(token, self._auth)
        with self._db.session() as session:
            user = session.execute(_token_check(), {"uid": claims["uid"]}).first()
        if (
            user is None
            or user.username != claims["sub"]
            or user.disabled
            or user.token_version != claims["ver"]
        ):
            raise NotAuthenticated("token revoked or user unknown")
        return Actor(id=claims["uid"], username=user.username, role=user.role)

    # --- changes that revoke tokens ---

    def change_password(
        self,
        actor: Actor,
        username: str,
        new_password: str,
        ctx: RequestContext = RequestContext(),
        old_password: str | None = None,
    ) -> None:
        """Set a new password: users change their own with the old one; admins reset anyone's."""
        validate_password(new_password, "new_password")
        is_self = actor.id != 0 and actor.username == username
        if not is_self:
            self._require_admin(actor, "user.password", username, ctx)
        guesses = self._limits.old_password
        if is_self and self._limiter is not None:
            self._limiter.check(guesses, username)
        new_hash = hash_password(new_password)
        with self._db.session() as session:
            user = self._find(session, username)
            old_ok = old_password is not None and verify_password(user.password_hash, old_password)
            if is_self and not old_ok:
                denied = True
            else:
                denied = False
                user.password_hash = new_hash
                user.token_version += 1
                self._record(session, actor, "user.password", ctx, username,
                             detail={"reset": not is_self})  # fmt: skip
        if denied:
            if self._limiter is not None:
                self._limiter.record(guesses, username)
            self._deny(actor, "user.password", username, ctx, "old password does not match")

    def set_role(
        self, actor: Actor, username: str, role: str, ctx: RequestContext = RequestContext()
    ) -> UserView:
        """Make a user an admin or a plain user (admins only; the last admin stays admin)."""
        validate_role(role)
        self._require_admin(actor, "user.role", username, ctx)
        with self._db.session() as session:
            serialise_writes(session, USERS_LOCK_KEY, "users")  # last-admin check holds
            user = self._find(session, username)
            if user.role == role:
                return user_view(user)
            if user.role == "admin" and not self._other_active_admins(session, user):
                raise Conflict(f"{username!r} is the last admin; make another admin first")
            before, user.role = user.role, role
            user.token_version += 1
            self._record(session, actor, "user.role", ctx, username,
                         detail={"from": before, "to": role})  # fmt: skip
            return user_view(user)

    def set_disabled(
        self, actor: Actor, username: str, disabled: bool, ctx: RequestContext = RequestContext()
    ) -> UserView:
        """Disable or enable a user (admins only; the last active admin cannot be disabled)."""
        action = "user.disable" if disabled else "user.enable"
        self._require_admin(actor, action, username, ctx)
        with self._db.session() as session:
            serialise_writes(session, USERS_LOCK_KEY, "users")
            user = self._find(session, username)
            if user.disabled == disabled:
                return user_view(user)
            if disabled and user.role == "admin" and not self._other_active_admins(session, user):
                raise Conflict(f"{username!r} is the last active admin; it cannot be disabled")
            user.disabled = disabled
            user.token_version += 1
            self._record(session, actor, action, ctx, username)
            return user_view(user)

    def bootstrap_admin(self, auth: AuthSettings | None = None) -> UserView | None:
        """Create ``auth.bootstrap_admin`` when no admin exists yet; None when nothing was
        created (not configured, or an admin already exists). Safe to call at every start."""
        auth = auth or self._auth
        if not auth.bootstrap_admin:
            return None
        password = auth.bootstrap_password.get_secret_value() if auth.bootstrap_password else ""
        validate_username(auth.bootstrap_admin)
        validate_password(password, "bootstrap_password")
        password_hash = hash_password(password)
        with self._db.session() as session:
            serialise_writes(session, USERS_LOCK_KEY, "users")
            if session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
                return None
            user = self._insert(session, auth.bootstrap_admin, password_hash, "admin")
            self._record(session, SYSTEM, "user.create", RequestContext(), user.username,
                         detail={"role": "admin", "bootstrap": True})  # fmt: skip
            return user_view(user)
