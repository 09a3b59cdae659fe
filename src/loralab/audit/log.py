"""The append-only, hash-chained audit log.

Each record's ``hash`` is ``sha256(prev_hash + canonical JSON of its fields)``, where the
fields are id, at (ISO 8601, UTC, microseconds), username, role, action, target, outcome,
client, request_id and detail; the first record's ``prev_hash`` is 64 zeros. Ids are given out
one by one under a write lock (``serialise_writes``), so the chain has no gaps: a missing id, a
``prev_hash`` that is not the previous record's hash, or a hash that does not match the fields
means that records were removed, reordered or altered. ``verify`` reports the first such record.

The chain alone cannot show that its newest records were deleted, or that a record was
rewritten and every hash after it recomputed: after each commit that appended a record the head
is sealed outside the table (:mod:`loralab.audit.anchor`), and ``verify`` checks the table
against that seal too. On PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE of the table
(migration 0003).

Appends join the caller's transaction: the record commits or rolls back with the change it
records. The lock is held until that transaction ends, so two writers never chain to the same
predecessor; record the audit entry last in a transaction to keep the lock short.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, event, func, insert, select
from sqlalchemy.orm import Session, SessionTransaction

from loralab.audit.anchor import AuditAnchor, Head
from loralab.identity import Actor, RequestContext
from loralab.infra.db import AuditRecord, Database, as_utc, utcnow
from loralab.infra.locks import AUDIT_LOCK_KEY, serialise_writes

log = logging.getLogger("loralab.audit")
GENESIS_HASH = "0" * 64
# Session.info keys: the head appended in the open transaction, the head of a committed one
# waiting for the connection's release, and whether the session's hooks are in place
_PENDING, _COMMITTED = "loralab_audit_head", "loralab_audit_committed"
_LISTENING = "loralab_audit_listening"
OUTCOMES = ("allowed", "denied", "failed")
AUDIT_TABLE = cast(Table, AuditRecord.__table__)  # appends are plain INSERTs into it
MAX_QUERY_LIMIT = 500
# a detail key containing one of these is refused: no passwords or tokens ever in the log
SECRET_MARKERS = (
    "password", "passwd", "token", "secret", "authorization", "api_key", "apikey",
    "credential", "private_key",
)  # fmt: skip


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_COMMITTED, None)


def _committed(session: Session) -> None:
    """The transaction committed: its head waits for the end of the root transaction (a
    savepoint's commit is not the transaction's)."""
    if session.in_nested_transaction():
        return
    head = session.info.pop(_PENDING, None)
    if head is not None:
        session.info[_COMMITTED] = head


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain: ``ok``, how many records were read, and the first
    bad record with what is wrong with it."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None


def record_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the previous hash and the canonical JSON of a record's fields."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def hashed_fields(row: AuditRecord) -> dict[str, Any]:
    """The fields of a record that its hash covers."""
    return {
        "id": row.id,
        "at": as_utc(row.at).isoformat(timespec="microseconds"),
        "username": row.username,
        "role": row.role,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "client": row.client,
        "request_id": row.request_id,
        "detail": row.detail or {},
    }


def clean_detail(detail: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON round trip of ``detail``; ValueError for secret-looking keys or non-JSON values."""
    if not detail:
        return {}
    _refuse_secrets(detail)
    try:
        cleaned = json.loads(json.dumps(detail, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"audit detail must be plain JSON: {err}") from None
    if not isinstance(cleaned, dict):
        raise ValueError("audit detail must be a mapping")
    return cleaned


def _refuse_secrets(value: Any, path: str = "detail") -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            lowered = str(key).lower()
            if any(marker in lowered for marker in SECRET_MARKERS):
                raise ValueError(f"{path}.{key}: secrets may not be written to the audit log")
            _refuse_secrets(inner, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_secrets(item, path)


@dataclass(frozen=True)
class AuditEntry:
    """One audit record as plain data (``at`` in ISO 8601 UTC, with microseconds)."""

    id: int
    at: str
    username: str | None
    role: str | None
    action: str
    target: str | None
    outcome: str
    client: str | None
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def record_view(row: AuditRecord) -> AuditEntry:
    """The view of a record row: the fields its hash covers, and the chain hashes."""
    return AuditEntry(**hashed_fields(row), prev_hash=row.prev_hash, hash=row.hash)


@cache
def _newest() -> Select[Any]:
    """The id and hash of the chain's newest record (a Core select built once)."""
    return select(AUDIT_TABLE.c.id, AUDIT_TABLE.c.hash).order_by(AUDIT_TABLE.c.id.desc()).limit(1)


@cache
def _append() -> Insert:
    """INSERT one record, its columns from the parameters (built once)."""
    return insert(AUDIT_TABLE)


def _fit(value: str | None, size: int) -> str | None:
    """Cut a free-text field to its column size (the hash covers the stored value)."""
    return None if value is None else value[:size]


def check_chain(rows: Iterator[AuditRecord]) -> VerifyResult:
    """Walk records in id order; stop at the first altered, missing or misplaced one."""
    prev_id, prev_hash, checked = 0, GENESIS_HASH, 0
    for row in rows:
        problem = _chain_problem(row, prev_id, prev_hash)
        if problem is not None:
            return VerifyResult(ok=False, checked=checked, first_bad_id=row.id, problem=problem)
        checked += 1
        prev_id, prev_hash = row.id, row.hash
    return VerifyResult(ok=True, checked=checked)


def _chain_problem(row: AuditRecord, prev_id: int, prev_hash: str) -> str | None:
    if record_hash(row.prev_hash, hashed_fields(row)) != row.hash:
        return "altered: the stored hash does not match the record's fields"
    if row.id != prev_id + 1:
        missing = f"{prev_id + 1}" if row.id == prev_id + 2 else f"{prev_id + 1}..{row.id - 1}"
        return f"removed: record(s) {missing} before this one are missing"
    if row.prev_hash != prev_hash:
        return (
            "broken link: prev_hash is not the hash of the record before it "
            "(a record was replaced, removed or reordered)"
        )
    return None


class AuditLog:
    """Append, query and verify the audit log of one database."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] = utcnow,
        anchor: AuditAnchor | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self.anchor = anchor

    def record(
        self,
        session: Session,
        *,
        action: str,
        outcome: str,
        username: str | None = None,
        role: str | None = None,
        target: str | None = None,
        client: str | None = None,
        request_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record inside the caller's transaction and return it (not attached to
        the session).

        ValueError for an unknown outcome, an empty action or a secret-looking detail key.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if not action:
            raise ValueError("action must not be empty")
        row = AuditRecord(
            at=self._clock(),
            username=_fit(username, 64),
            role=_fit(role, 16),
            action=action[:64],
            target=_fit(target, 255),
            outcome=outcome,
            client=_fit(client, 64),
            request_id=_fit(request_id, 64),
            detail=clean_detail(detail),
        )
        session.flush()  # the caller's pending changes reach the database before the record
        serialise_writes(session, AUDIT_LOCK_KEY, "audit_log")
        last = session.execute(_newest()).first()
        row.id, row.prev_hash = (last.id + 1, last.hash) if last else (1, GENESIS_HASH)
        fields = hashed_fields(row)
        row.hash = record_hash(row.prev_hash, fields)
        # a plain INSERT of the columns (built once): the returned row stays out of the session
        # (nothing reads it back there), which spares the unit of work
        stored = {**fields, "at": row.at, "prev_hash": row.prev_hash, "hash": row.hash}
        session.execute(_append(), stored)
        if self.anchor is not None:
            self._seal_after_commit(session, Head(row.id, row.hash))
        return row

    def _seal_after_commit(self, session: Session, head: Head) -> None:
        """Seal ``head`` once the caller's transaction commits; a rollback seals nothing.

        ``head`` is the record just appended under the write lock, so it is the chain's head
        when the transaction commits, and sealing needs no database. (Reading the head back in
        a new session needed a second pooled connection while the caller's was still held:
        under load every connection of the pool waited for a second one, and ``POST /train``
        failed after the pool's 30 s timeout, its job committed.) The seal is written when the
        transaction has ended and its connection is back in the pool, so the file's fsync
        never holds a database connection; ``commit()`` still returns after the seal.
        """
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "after_commit", _committed)
            event.listen(session, "after_rollback", _drop_pending)
            event.listen(session, "after_transaction_end", self._seal_committed)
        session.info[_PENDING] = head  # a later append in the transaction is the newer head

    def _seal_committed(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:  # a savepoint or an inner block: not the end yet
            return
        head = session.info.pop(_COMMITTED, None)
        session.info.pop(_PENDING, None)  # ended without a commit (closed): nothing to seal
        if head is None or self.anchor is None:
            return
        try:
            self.anchor.seal(head)
        except OSError as err:  # the change is committed: fail the anchor, not the request
            log.error("audit anchor not sealed at record %d: %s", head.id, err)

    def anchor_current_head(self) -> Head | None:
        """Seal the table's newest record when this process's anchor holds nothing yet; the
        head sealed, or None when nothing was done (no anchor, one already sealed, an empty or
        damaged one: ``verify`` reports damage).

        For a process that joins a running platform with an anchor of its own (another
        machine): the records so far were sealed elsewhere, and until its first append its
        ``verify`` would call the chain not anchored. This trusts the table as it is at start,
        as the first append after a missing anchor file always has; an anchor that exists is
        never moved (it moves forward at appends only).
        """
        if self.anchor is None:
            return None
        try:
            if self.anchor.read() is not None:
                return None
        except ValueError:
            return None
        with self._db.session() as session:
            last = session.execute(
                select(AuditRecord.id, AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)
            ).first()
        if last is None:
            return None
        head = Head(last.id, last.hash)
        self.anchor.seal(head)
        return head

    def record_by(
        self,
        session: Session,
        actor: Actor,
        ctx: RequestContext,
        *,
        action: str,
        outcome: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """``record`` for an actor in a request context (client address, request id)."""
        return self.record(
            session,
            action=action,
            outcome=outcome,
            username=actor.username,
            role=actor.role,
            target=target,
            client=ctx.client,
            request_id=ctx.request_id,
            detail=detail,
        )

    def query(
        self,
        *,
        username: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[AuditEntry], int]:
        """Records matching every given filter, newest first, and how many match in all.

        ``limit`` is capped at 500; ``since`` is inclusive, ``until`` exclusive.
        """
        limit = max(1, min(limit, MAX_QUERY_LIMIT))
        stmt = _filtered(select(AuditRecord), username, action, since, until)
        count = _filtered(select(func.count(AuditRecord.id)), username, action, since, until)
        with self._db.session() as session:
            total = session.scalar(count) or 0
            rows = session.scalars(
                stmt.order_by(AuditRecord.id.desc()).offset(max(0, offset)).limit(limit)
            ).all()
            return [record_view(row) for row in rows], total

    def recent(
        self, session: Session, *, action: str, outcome: str, username: str,
        client: str | None, since: datetime,
    ) -> list[datetime]:  # fmt: skip
        """When ``username`` from ``client`` had ``action`` end in ``outcome`` since
        ``since``, oldest first (for rate limits)."""
        # compare with the stored (cut) values, or an over-long name would escape the limit
        client = _fit(client, 64)
        stmt = _filtered(select(AuditRecord.at), username[:64], action, since, None).where(
            AuditRecord.outcome == outcome,
            AuditRecord.client.is_(None) if client is None else AuditRecord.client == client,
        )
        return list(session.scalars(stmt.order_by(AuditRecord.at)))

    def verify(self) -> VerifyResult:
        """Check the whole chain, streaming records in id order, then the table against the
        sealed head (truncation, rewriting with recomputed hashes, a forged anchor)."""
        with self._db.session() as session:
            rows = session.scalars(
                select(AuditRecord).order_by(AuditRecord.id).execution_options(yield_per=1000)
            )
            result = check_chain(iter(rows))
            if not result.ok or self.anchor is None:
                return result
            problem = self.anchor.problem(
                lambda id_: session.scalar(select(AuditRecord.hash).where(AuditRecord.id == id_)),
                session.scalar(select(func.max(AuditRecord.id))),
            )
        if problem is None:
            return result
        bad_id, why = problem
        return VerifyResult(ok=False, checked=result.checked, first_bad_id=bad_id, problem=why)


def _filtered(
    stmt: Select[Any],
    username: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    if username is not None:
        stmt = stmt.where(AuditRecord.username == username)
    if action is not None:
        stmt = stmt.where(AuditRecord.action == action)
    if since is not None:
        stmt = stmt.where(AuditRecord.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.at < until)
    return stmt
