"""Every timestamp column stores UTC and reads back an aware UTC datetime (SQLite and Postgres)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, select

from loralab.infra.db import Base, Database, User, UTCDateTime

PARIS_SUMMER = timezone(timedelta(hours=2))


def _round_trip(url: str, username: str, created: datetime) -> datetime:
    db = Database(url)
    try:
        with db.session() as session:
            session.add(User(username=username, password_hash="x", created_at=created))
        with db.session() as session:
            return session.scalars(select(User.created_at).where(User.username == username)).one()
    finally:
        db.dispose()


def test_every_datetime_column_uses_the_utc_type() -> None:
    columns = [c for table in Base.metadata.tables.values() for c in table.columns]
    stamps = [c.name for c in columns if isinstance(c.type, UTCDateTime)]
    assert {"created_at", "updated_at", "heartbeat_at", "at"} <= set(stamps)
    bare = [
        c for c in columns if isinstance(c.type, DateTime)
    ]  # a plain DateTime is not UTCDateTime
    assert not bare, bare


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2025, 3, 1, 12, 30, 5, 123456), datetime(2025, 3, 1, 12, 30, 5, 123456)),
        (datetime(2025, 7, 1, 14, 0, tzinfo=PARIS_SUMMER), datetime(2025, 7, 1, 12, 0)),
        (datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc), datetime(2025, 7, 1, 12, 0)),
    ],
)
def test_sqlite_reads_back_aware_utc(
    sqlite_db_url: str, given: datetime, expected: datetime
) -> None:
    back = _round_trip(sqlite_db_url, "alice", given)
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)
    assert back == expected.replace(tzinfo=timezone.utc)


def test_sqlite_comparisons_use_utc(sqlite_db_url: str) -> None:
    _round_trip(sqlite_db_url, "bob", datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc))
    db = Database(sqlite_db_url)
    try:
        with db.session() as session:
            # 13:30 in UTC+2 is 11:30 UTC: before the stored 12:00 UTC, so the row matches
            since = datetime(2025, 7, 1, 13, 30, tzinfo=PARIS_SUMMER)
            found = session.scalars(select(User.username).where(User.created_at >= since)).all()
        assert found == ["bob"]
    finally:
        db.dispose()


@pytest.mark.integration
def test_postgres_reads_back_aware_utc_whatever_the_session_zone(pg_db_url: str) -> None:
    given = datetime(2025, 7, 1, 14, 0, tzinfo=PARIS_SUMMER)
    db = Database(pg_db_url)
    try:
        with db.session() as session:
            session.connection().exec_driver_sql("SET TIME ZONE 'America/New_York'")
            session.add(User(username="utc-pg-carol", password_hash="x", created_at=given))
            session.flush()
            back = session.scalars(
                select(User.created_at).where(User.username == "utc-pg-carol")
            ).one()
        assert back.utcoffset() == timedelta(0)
        assert back == datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc)
    finally:
        db.dispose()
