"""Transaction-scoped write serialisation for SQLite and PostgreSQL.

``serialise_writes(session, key)`` makes the rest of the caller's transaction exclusive among
writers that ask for the same key, until that transaction commits or rolls back:

- PostgreSQL: ``pg_advisory_xact_lock(key)``. Reads after it (READ COMMITTED) see everything
  the previous holder committed.
- SQLite: a no-op write (``UPDATE ... WHERE 1 = 0``) takes the database write lock now, before
  any read, so the reads that follow see the latest commit and no other writer can commit in
  between (WAL mode; other writers wait on the busy timeout). SQLite has one write lock for the
  whole file, so ``key`` does not matter there. This also holds across processes, which a
  Python threading lock would not; and a threading lock taken here could deadlock with a
  transaction of another thread that already holds the SQLite write lock.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session

# one key per purpose, so unrelated writers do not wait for each other on PostgreSQL
AUDIT_LOCK_KEY = 7_301_002
USERS_LOCK_KEY = 7_301_003
LOGIN_LOCK_KEY = 7_301_004


def serialise_writes(session: Session, key: int, table: str) -> None:
    """Hold an exclusive write lock (per ``key`` on PostgreSQL) until the transaction ends.

    ``table`` is any existing table; SQLite needs one for its no-op write.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        session.execute(text(f"UPDATE {table} SET id = id WHERE 1 = 0"))  # noqa: S608
    else:
        raise RuntimeError(f"no write serialisation for the {dialect} dialect")


def serialise_name(session: Session, key: int, name: str) -> None:
    """Make the rest of the transaction exclusive among transactions that ask for the same
    ``key`` and ``name`` (a user name, say), across processes and machines.

    PostgreSQL: an advisory transaction lock on a 64-bit hash of both (a collision only makes
    two names wait for each other). SQLite: nothing is taken; one process's sessions already
    take turns (``Database``), so processes sharing one SQLite file are not serialised here.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"{key}:{name}".encode("utf-8", "backslashreplace"), digest_size=8)
    lock = int.from_bytes(digest.digest(), "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
