"""Model cards, stages and stage history in the platform database (``registry.backend``
database): :class:`DbCardStore`, :class:`DbStageStore` and :func:`import_card_files`.

The truth is three tables (``infra.db``): ``model_cards`` (each version's card and stage),
``model_stage_history`` and ``registered_models`` (one row per model: the row a change locks,
and a change counter). "One Production per model" is the database's: a change locks the model's
row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write transaction that starts with
it serialises), and a partial unique index refuses a second Production row whatever happens.
So it holds across processes and machines, where the files backend's file lock holds on one.

Followers, brought along in the same transaction, before it commits (still under the lock):
MLflow (the ``production`` and ``staging`` aliases and the ``loralab.stage`` tag; a failure
there rolls the database back and propagates) and the export for people and tools that read
files: ``<card_dir>/<name>@<version>.json`` and ``history/<name>.jsonl``, written atomically in
today's format. A machine only exports what it changes; ``repair`` (``loralab models
reconcile``) rewrites whatever drifted, MLflow and files alike, from the database.

:meth:`DbCardStore.stamp` (also the stage store's) is the sum of the change counters: it moves
with every card write and stage change, on every machine. It is cached in the process for
``stamp_ttl`` seconds (at most 1 s where the registry builds it), so a prediction service that
asks on every request sends about one query a second and sees another machine's promotion
within that time; the store's own writes clear the cache at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loralab.errors import NotFound
from loralab.infra.db import (
    Database,
    ModelCardRecord,
    RegisteredModelRecord,
    StageChangeRecord,
    utcnow,
)
from loralab.infra.model_registry import PRODUCTION_ALIAS, STAGING_ALIAS
from loralab.registry.cards import ModelCard, Stage, validate_card
from loralab.registry.mlflow_stages import ModelRegistry, point_alias
from loralab.registry.stages import Change, StageChange, StageStore, StageUpdate
from loralab.registry.store import CardStore
from loralab.training.files import atomic_write_text

__all__ = ["DbCardStore", "DbStageStore"]

_VERSION = re.compile(r"[1-9][0-9]{0,8}")


def _number(name: str, version: str) -> int:
    """A version's number as the tables keep it; NotFound for text that is no version."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise NotFound(f"no version {version!r} of {name}")
    return int(version)


def history_path(root: Path, name: str) -> Path:
    """The exported history of ``name`` (the files backend's own history file)."""
    return root / "history" / f"{name}.jsonl"


def card_of(record: ModelCardRecord) -> ModelCard:
    """The card of a row, its ``stage`` the row's (the truth) once the version has one."""
    assert record.card is not None
    data = dict(record.card)
    if record.stage is not None:
        data["stage"] = record.stage
    return validate_card(data)


def change_of(record: StageChangeRecord) -> StageChange:
    return StageChange(
        model=record.model,
        version=str(record.version),
        from_stage=Stage(record.from_stage) if record.from_stage else None,
        to_stage=Stage(record.to_stage),
        by=record.changed_by,
        at=record.at.timestamp(),
        reason=record.reason,
    )


def history_text(changes: list[StageChange]) -> str:
    """The history file's text: one JSON object a line (as the files backend writes it)."""
    return "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in changes)


@dataclass
class _Held:
    """This thread's open registry transaction: its session, the models whose rows it locked,
    and what to export before it commits."""

    session: Session
    locked: set[str] = field(default_factory=set)
    cards: set[tuple[str, int]] = field(default_factory=set)
    histories: set[str] = field(default_factory=set)


class DbCardStore(CardStore):
    """Cards in ``model_cards``; every write also exports the card file (``root``, the card
    folder), atomically, as :class:`CardStore` writes it.

    Writes run in a transaction that holds the model's row lock (:meth:`transaction`). One
    thread has at most one such transaction: a nested write joins it, and the exports run just
    before the outermost one commits, so a rolled-back change exports nothing.
    """

    def __init__(
        self, db: Database | Callable[[], Database], root: Path, stamp_ttl: float = 1.0
    ) -> None:
        """``db``: the platform database, or a function that opens it when first needed;
        ``stamp_ttl``: how long :meth:`stamp` may answer from the process's cache."""
        super().__init__(root)
        self._db = db
        self.stamp_ttl = stamp_ttl
        self._local = threading.local()
        self._stamp: tuple[float, int] | None = None
        self._generation = 0  # moves when this store changes something: a stamp read
        # that started before the change must not be cached

    @property
    def db(self) -> Database:
        if callable(self._db):
            self._db = self._db()
        return self._db

    # -- transactions ---------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, name: str, step: bool = False) -> Iterator[Session]:
        """A session whose transaction holds ``name``'s row lock until the outermost block
        ends (re-entrant in one thread). ``step``: a nested block runs in a savepoint, so its
        failure undoes only its own changes."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            self._lock_model(held, name)
            if step:
                with held.session.begin_nested():
                    yield held.session
            else:
                yield held.session
            return
        with self.db.session() as session:
            held = _Held(session)
            self._local.held = held
            try:
                self._lock_model(held, name)
                yield session
                self._export(held)
            finally:
                self._local.held = None
        self.forget_stamp()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """This thread's open transaction (it sees its own changes), else a short one."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            yield held.session
            return
        with self.db.session() as session:
            yield session

    def _lock_model(self, held: _Held, name: str) -> None:
        """Create ``name``'s row if missing, then lock it for the rest of the transaction.

        On SQLite the insert (even one that inserts nothing) takes the database's write lock
        before anything is read, so the reads that follow see the latest commit.
        """
        if name in held.locked:
            return
        session = held.session
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now = utcnow()
        session.execute(
            insert(RegisteredModelRecord)
            .values(name=name, changes=0, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        session.execute(
            select(RegisteredModelRecord.name)
            .where(RegisteredModelRecord.name == name)
            .with_for_update()
        )
        held.locked.add(name)

    def changed(
        self, session: Session, name: str, versions: list[int], history: bool = False
    ) -> None:
        """Record a change of ``name`` in this thread's transaction: the counter moves (the
        stamp), and the versions' card files (and the history file) are exported on commit."""
        held: _Held = self._local.held
        session.execute(
            update(RegisteredModelRecord)
            .where(RegisteredModelRecord.name == name)
            .values(changes=RegisteredModelRecord.changes + 1, updated_at=utcnow())
        )
        held.cards.update((name, v) for v in versions)
        if history:
            held.histories.add(name)
        self.forget_stamp()

    def _export(self, held: _Held) -> None:
        """Write the card and history files of what this transaction changed."""
        session = held.session
        session.flush()
        for name, number in sorted(held.cards):
            record = session.get(ModelCardRecord, (name, number))
            if record is not None and record.card is not None:
                atomic_write_text(self.path_of(name, str(number)), self.card_text(record))
        for name in sorted(held.histories):
            atomic_write_text(history_path(self.root, name), history_text(_history(session, name)))

    @staticmethod
    def card_text(record: ModelCardRecord) -> str:
        """The exported file's text (as :meth:`CardStore.write` writes a card)."""
        return card_of(record).model_dump_json(indent=1)

    # -- cards ----------------------------------------------------------------------------
    def write(self, card: ModelCard) -> Path:
        """Store ``card`` (a new version or a replacement). Its stage is not taken from the
        card: stages are the stage store's, so a version keeps the stage it has."""
        number = _number(card.name, card.version)
        with self.transaction(card.name, step=True) as session:
            record = session.get(ModelCardRecord, (card.name, number))
            data = card.model_dump(mode="json")
            if record is None:
                session.add(ModelCardRecord(name=card.name, version=number, card=data))
            else:
                if record.stage is not None:
                    data["stage"] = record.stage
                record.card = data
            session.flush()
            self.changed(session, card.name, [number])
        return self.path_of(card.name, card.version)

    def read(self, name: str, version: str) -> ModelCard:
        with self.reading() as session:
            record = None
            if isinstance(version, str) and _VERSION.fullmatch(version):
                record = session.get(ModelCardRecord, (name, int(version)))
            if record is None or record.card is None:
                raise NotFound(f"no model card for {name}@{version}")
            return card_of(record)

    def exists(self, name: str, version: str) -> bool:
        try:
            self.read(name, version)
        except NotFound:
            return False
        return True

    def all_cards(self) -> list[ModelCard]:
        with self.reading() as session:
            records = session.scalars(
                select(ModelCardRecord)
                .where(ModelCardRecord.card.is_not(None))
                .order_by(ModelCardRecord.name, ModelCardRecord.version)
            ).all()
            return [card_of(r) for r in records]

    def stamp(self) -> int:
        """Moves with every card write and stage change, on any machine; cached in this
        process for ``stamp_ttl`` seconds (this store's own writes clear it)."""
        cached, generation = self._stamp, self._generation
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.stamp_ttl:
            return cached[1]
        with self.reading() as session:
            total = session.scalar(
                select(func.coalesce(func.sum(RegisteredModelRecord.changes), 0))
            )
        value = int(total or 0)
        if getattr(self._local, "held", None) is None and generation == self._generation:
            self._stamp = (now, value)
        return value

    def forget_stamp(self) -> None:
        """The next :meth:`stamp` reads the database (a miss must not be answered from a
        stamp cached before another machine's write)."""
        self._generation += 1
        self._stamp = None

    # -- repair of the export -------------------------------------------------------------
    def repair_export(self, session: Session, name: str) -> list[Change]:
        """Rewrite ``name``'s card and history files that differ from the database."""
        changes = []
        records = session.scalars(
            select(ModelCardRecord).where(
                ModelCardRecord.name == name, ModelCardRecord.card.is_not(None)
            )
        ).all()
        for record in sorted(records, key=lambda r: r.version):
            path, text = self.path_of(name, str(record.version)), self.card_text(record)
            old = path.read_text("utf-8") if path.is_file() else None
            if old != text:
                atomic_write_text(path, text)
                was = _stage_in(old)
                changes.append(Change(f"{name}@{record.version}", "card file", was, record.stage))
        path, text = history_path(self.root, name), history_text(_history(session, name))
        old = path.read_text("utf-8") if path.is_file() else None
        if text and old != text:
            atomic_write_text(path, text)
            lines = str(len(old.splitlines())) if old is not None else None
            changes.append(Change(name, "history file lines", lines, str(len(text.splitlines()))))
        return changes


def _stage_in(text: str | None) -> str | None:
    """The ``stage`` of an exported card file's text (None: no file, or unreadable)."""
    if text is None:
        return None
    try:
        stage = json.loads(text).get("stage")
    except (ValueError, AttributeError):
        return None
    return stage if isinstance(stage, str) else None


def _history(session: Session, name: str) -> list[StageChange]:
    records = session.scalars(
        select(StageChangeRecord)
        .where(StageChangeRecord.model == name)
        .order_by(StageChangeRecord.id)
    ).all()
    return [change_of(r) for r in records]


class DbStageStore(StageStore):
    """Stages in ``model_cards.stage``, history in ``model_stage_history``; MLflow's aliases and
    stage tags and the exported files follow in the same transaction (see the module text)."""

    def __init__(
        self, registry: ModelRegistry | Callable[[], ModelRegistry], cards: DbCardStore
    ) -> None:
        """``registry``: the MLflow registry, or a function that connects to it when first
        needed (reading stages and history needs no MLflow)."""
        self._registry = registry
        self.cards = cards

    @property
    def registry(self) -> ModelRegistry:
        if callable(self._registry):
            self._registry = self._registry()
        return self._registry

    # -- reading --------------------------------------------------------------------------
    def get(self, name: str, version: str) -> Stage | None:
        number = _number(name, version)
        with self.cards.reading() as session:
            stage = session.scalar(
                select(ModelCardRecord.stage).where(
                    ModelCardRecord.name == name, ModelCardRecord.version == number
                )
            )
        return Stage(stage) if stage else None

    def stages(self, name: str) -> dict[str, Stage]:
        with self.cards.reading() as session:
            return _stages(session, name)

    def production(self, name: str) -> str | None:
        with self.cards.reading() as session:
            return newest(session, name, Stage.PRODUCTION)

    def staging(self, name: str) -> str | None:
        with self.cards.reading() as session:
            return newest(session, name, Stage.STAGING)

    def history(self, name: str) -> list[StageChange]:
        with self.cards.reading() as session:
            return _history(session, name)

    def stamp(self) -> int:
        return self.cards.stamp()

    # -- changing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A database transaction holding ``name``'s row lock (re-entrant in one thread)."""
        with self.cards.transaction(name):
            yield

    def set(self, name: str, version: str, stage: Stage, by: str, reason: str) -> StageUpdate:
        """One transaction: lock the model's row, archive the previous Production, set the
        stage, add the history lines, make MLflow follow, export the files, commit. NotFound
        for a version MLflow does not know; any MLflow failure rolls everything back."""
        number = _number(name, version)
        if self.registry.get_version(name, version) is None:
            raise NotFound(f"{name}@{version} is not in the MLflow model registry")
        with self.cards.transaction(name, step=True) as session:
            record = session.get(ModelCardRecord, (name, number))
            if record is None:  # registered a moment ago: the card comes next
                record = ModelCardRecord(name=name, version=number)
                session.add(record)
            old = Stage(record.stage) if record.stage else None
            archived = []
            if stage is Stage.PRODUCTION:
                archived = self._archive_production(session, name, number, by)
            _move(session, record, stage, by, reason, old)
            session.flush()
            self.cards.changed(session, name, [number, *archived], history=True)
            self._follow(session, name, [*archived, number])
        return StageUpdate(old, [f"{name}@{v}" for v in archived])

    def _archive_production(self, session: Session, name: str, number: int, by: str) -> list[int]:
        """Archive every other Production version of ``name`` (at most one: the index);
        flushed before the new one takes the stage, so the index never sees two."""
        others = session.scalars(
            select(ModelCardRecord).where(
                ModelCardRecord.name == name,
                ModelCardRecord.stage == Stage.PRODUCTION.value,
                ModelCardRecord.version != number,
            )
        ).all()
        for other in others:
            why = f"replaced by {name}@{number}"
            _move(session, other, Stage.ARCHIVED, by, why, Stage.PRODUCTION)
        session.flush()
        return sorted(o.version for o in others)

    def _follow(self, session: Session, name: str, versions: list[int]) -> None:
        """MLflow follows the database: the versions' stage tags, then both aliases."""
        stages = _stages(session, name)
        for number in versions:
            self.registry.set_stage_tag(name, str(number), stages[str(number)].value)
        point_alias(self.registry, name, PRODUCTION_ALIAS, newest(session, name, Stage.PRODUCTION))
        point_alias(self.registry, name, STAGING_ALIAS, newest(session, name, Stage.STAGING))

    # -- repair ---------------------------------------------------------------------------
    def repair(self, name: str) -> list[Change]:
        """The database is the truth: MLflow's stage tags and aliases and the exported files
        are made to agree with it. MLflow versions without a card and cards MLflow does not
        know are reported (nothing can repair them from here)."""
        with self.cards.transaction(name) as session:
            stages = _stages(session, name)
            carded = frozenset(
                session.scalars(
                    select(ModelCardRecord.version).where(
                        ModelCardRecord.name == name, ModelCardRecord.card.is_not(None)
                    )
                )
            )
            changes, known = self._repair_tags(name, stages, carded)
            for number in sorted(carded - known):
                changes.append(Change(f"{name}@{number}", "missing in registry", None, None))
            for alias, stage in (
                (PRODUCTION_ALIAS, Stage.PRODUCTION),
                (STAGING_ALIAS, Stage.STAGING),
            ):
                target = newest(session, name, stage)
                if target is not None and int(target) not in known:
                    continue  # reported above: MLflow cannot point at it
                moved = point_alias(self.registry, name, alias, target)
                if moved is not None:
                    changes.append(moved)
            changes += self.cards.repair_export(session, name)
            if changes:
                self.cards.changed(session, name, [])
        return changes

    def _repair_tags(
        self, name: str, stages: dict[str, Stage], carded: frozenset[int]
    ) -> tuple[list[Change], frozenset[int]]:
        """Every MLflow version's stage tag equal to its stage here; versions without a card
        reported. Returns the changes and the version numbers MLflow knows."""
        changes: list[Change] = []
        found_versions = self.registry.versions(name)
        known = frozenset(int(found.version) for found in found_versions)
        for found in found_versions:
            version = str(found.version)
            if int(version) not in carded:  # a crash between MLflow and the card write
                changes.append(Change(f"{name}@{version}", "missing card", None, None))
            want, tag = stages.get(version), found.stage
            if want is not None and tag != want.value:
                self.registry.set_stage_tag(name, version, want.value)
                changes.append(Change(f"{name}@{version}", "registry tag", tag, want.value))
        return changes, known


def _stages(session: Session, name: str) -> dict[str, Stage]:
    rows = session.execute(
        select(ModelCardRecord.version, ModelCardRecord.stage).where(
            ModelCardRecord.name == name, ModelCardRecord.stage.is_not(None)
        )
    ).all()
    return {str(version): Stage(stage) for version, stage in rows}


def newest(session: Session, name: str, stage: Stage) -> str | None:
    """The highest version of ``name`` in ``stage`` (Production: the only one)."""
    found = session.scalar(
        select(func.max(ModelCardRecord.version)).where(
            ModelCardRecord.name == name, ModelCardRecord.stage == stage.value
        )
    )
    return str(found) if found is not None else None


def _move(
    session: Session,
    record: ModelCardRecord,
    stage: Stage,
    by: str,
    reason: str,
    old: Stage | None,
) -> None:
    """Give ``record`` its new stage (the card's ``stage`` field too) and add the history line."""
    record.stage = stage.value
    if record.card is not None:
        record.card = {**record.card, "stage": stage.value}
    session.add(
        StageChangeRecord(
            model=record.name,
            version=record.version,
            from_stage=old.value if old else None,
            to_stage=stage.value,
            changed_by=by,
            at=datetime.now(timezone.utc),
            reason=reason,
        )
    )
