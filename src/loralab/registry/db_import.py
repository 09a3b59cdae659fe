"""Moving the card folder into the database: :func:`import_card_files`.

This is the migration that moves the JSON cards in: an Alembic revision cannot see the settings
that name the card folder, so it runs after the upgrade, where the database backend is in
effect (``loralab.bootstrap.prepare_database``, at the start of the API and the workers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loralab.errors import InvalidInput
from loralab.infra.db import ModelCardRecord, StageChangeRecord
from loralab.registry.cards import ModelCard, Stage, validate_card_json
from loralab.registry.db_store import DbCardStore, history_path, newest
from loralab.registry.stages import StageChange

__all__ = ["CardImport", "import_card_files"]


@dataclass
class CardImport:
    """What :func:`import_card_files` did: the versions it moved in (``NAME@VERSION``), the
    history lines, the Production cards it took in as Archived (a model has one Production),
    and the files it could not read (``file: why``)."""

    imported: list[str] = field(default_factory=list)
    history_lines: int = 0
    archived: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def import_card_files(store: DbCardStore) -> CardImport:
    """Move the card folder's cards that are not in the database yet into it, with each
    model's ``history/NAME.jsonl`` (when the database has no history of that model yet).

    This is the migration that moves the JSON cards in: an Alembic revision cannot see the
    settings that name the card folder, so it runs after the upgrade, where the database
    backend is in effect (``loralab.bootstrap.prepare_database``). Idempotent: a card already
    in the database is left alone, so running it at every start costs one folder scan. Stages
    come from the cards (the files backend keeps them equal to MLflow's); a second Production
    card of a model comes in as Archived. ``repair`` then brings MLflow into line.
    """
    report = CardImport()
    by_model: dict[str, list[ModelCard]] = {}
    for path in sorted(store.root.glob("*@*.json")) if store.root.is_dir() else []:
        try:
            card = validate_card_json(path.read_bytes())
        except (InvalidInput, OSError) as err:
            report.skipped.append(f"{path.name}: {err}")
            continue
        by_model.setdefault(card.name, []).append(card)
    for name, cards in sorted(by_model.items()):
        _import_model(store, name, sorted(cards, key=lambda c: int(c.version)), report)
    return report


def _import_model(
    store: DbCardStore, name: str, cards: list[ModelCard], report: CardImport
) -> None:
    with store.transaction(name) as session:
        records = {
            r.version: r
            for r in session.scalars(select(ModelCardRecord).where(ModelCardRecord.name == name))
        }
        new = [
            c
            for c in cards
            if records.get(int(c.version)) is None or records[int(c.version)].card is None
        ]
        if not new:
            return
        production = newest(session, name, Stage.PRODUCTION)
        crowned = production or max(
            (c.version for c in new if c.stage is Stage.PRODUCTION), key=int, default=None
        )
        for card in new:
            data = card.model_dump(mode="json")
            stage = card.stage
            if stage is Stage.PRODUCTION and card.version != crowned:
                stage = Stage.ARCHIVED
                report.archived.append(card.ref)
            record = records.get(int(card.version))
            if record is None:
                data["stage"] = stage.value
                session.add(
                    ModelCardRecord(
                        name=name, version=int(card.version), stage=stage.value, card=data
                    )
                )
            else:  # a stage without its card (a crash between them): the stage stays
                record.card = {**data, "stage": record.stage or stage.value}
                record.stage = record.stage or stage.value
            report.imported.append(card.ref)
        session.flush()
        lines = _import_history(store, session, name, report)
        report.history_lines += lines
        store.changed(session, name, [int(c.version) for c in new], history=lines > 0)


def _import_history(store: DbCardStore, session: Session, name: str, report: CardImport) -> int:
    """The model's history file into the table, unless the table has its history already."""
    path = history_path(store.root, name)
    has = session.scalar(
        select(func.count()).select_from(StageChangeRecord).where(StageChangeRecord.model == name)
    )
    if has or not path.is_file():
        return 0
    count = 0
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        try:
            change = StageChange.from_dict(json.loads(line)) if line.strip() else None
        except (ValueError, KeyError, TypeError) as err:
            report.skipped.append(f"{path.name} line {number}: {err!r}")
            continue
        if change is None:
            continue
        session.add(
            StageChangeRecord(
                model=name,
                version=int(change.version),
                from_stage=change.from_stage.value if change.from_stage else None,
                to_stage=change.to_stage.value,
                changed_by=change.by,
                at=datetime.fromtimestamp(change.at, timezone.utc),
                reason=change.reason,
            )
        )
        count += 1
    return count
