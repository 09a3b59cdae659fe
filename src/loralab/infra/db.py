"""The platform database: SQLAlchemy 2 tables for users, jobs, datasets, the audit log and the
model registry (cards, stages, stage history; used when ``registry.backend`` is database).

SQLite (embedded default) and PostgreSQL (driver: psycopg 3) are both supported. The schema is
created and changed only by Alembic migrations (``migrations/``); ``upgrade_database`` runs them.
The jobs table is the source of truth for a job's state; the broker only carries job ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive value is taken to be UTC already (how loralab stores times)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp column that stores UTC and always reads back an aware UTC datetime.

    SQLite keeps no offset (it hands back naive values) and PostgreSQL hands back the session's
    time zone: both come back as UTC here, so no caller converts. The SQL type is unchanged
    (``TIMESTAMP WITH TIME ZONE``), so the migrations need nothing new.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")  # admin | user
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # bumped on a password change, a role change or disabling: older tokens stop working
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Job(Base):
    """A training job. States: queued, validating, training, evaluating, registering,
    succeeded, failed, cancelled."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True, default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the validated TrainConfig fields
    model_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    queue: Mapped[str] = mapped_column(String(16), default="cpu")  # cpu | cuda | mps
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # {"epoch", "step", "total_steps", "percent", "loss"} while training
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # why it failed, one of loralab.observability.reasons.REASONS (metrics label); NULL: old rows
    failure_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # results/ run id
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(160), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # last time the id was handed to the broker; NULL: never (the broker was down)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # the sweep trial this job trains (set by the sweep service only); NULL: a plain job
    sweep_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    sweep_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_jobs_owner_state", "owner_id", "state"),)


class DatasetRecord(Base):
    """Who uploaded which registered dataset version (the data itself lives in the data store)."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("name", "version", name="uq_datasets_name_version"),)


class AuditRecord(Base):
    """One append-only audit entry, chained to the previous one by ``hash``."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # allowed | denied | failed
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class RegisteredModelRecord(Base):
    """One row per registered model name: the row a stage change locks (``SELECT ... FOR
    UPDATE``), so changes of one model take turns on every machine; ``changes`` counts its card
    writes and stage changes (their sum is the registry's stamp)."""

    __tablename__ = "registered_models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ModelCardRecord(Base):
    """A registered model version: its stage (the truth; NULL until it is given one) and its
    card (NULL between the MLflow registration and the card write). At most one Production
    version per model: a partial unique index, so the database itself refuses a second."""

    __tablename__ = "model_cards"

    name: Mapped[str] = mapped_column(ForeignKey("registered_models.name"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    card: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index(
            "uq_model_cards_one_production",
            "name",
            unique=True,
            postgresql_where=text("stage = 'Production'"),
            sqlite_where=text("stage = 'Production'"),
        ),
    )


class StageChangeRecord(Base):
    """One line of a model's stage history (append-only; ``id`` orders a model's lines)."""

    __tablename__ = "model_stage_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy 2.1 would otherwise want psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    SQLite runs with ``synchronous=NORMAL``, the setting SQLite recommends with WAL: a commit
    survives a crash of the process (the API, a worker) and the file is never corrupted; only a
    power loss can undo the last commits before a checkpoint. Use PostgreSQL where that matters.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


class Database:
    """An engine and a session factory; ``session()`` commits on success, rolls back on error.

    On SQLite, sessions of one process take turns (a re-entrant lock): SQLite has one writer
    anyway, and threads queueing on a lock are served in order, where threads left to SQLite's
    busy handler sleep in growing steps (up to 100 ms) and the unlucky ones wait seconds.
    Sessions are short everywhere in loralab; no code waits on another thread inside one.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        sqlite = self.url.startswith("sqlite")
        self._turns: AbstractContextManager[Any] = threading.RLock() if sqlite else nullcontext()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._turns, self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("postgresql")

    def dispose(self) -> None:
        self.engine.dispose()
