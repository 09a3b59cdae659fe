"""Stages in the MLflow Model Registry, mirrored in the card folder: :class:`MlflowStageStore`.

The truth: the ``production`` alias names the Production version (an alias names exactly one
version, so "one Production" is structural); every other version's stage is its version tag
``loralab.stage`` (a ``Production`` tag without the alias is stale and means Archived).
Mirrors, written in the same step under the model's lock: the ``staging`` alias (the newest
version in Staging), the ``stage`` field of the version's card file, and one line of
``history/NAME.jsonl``. ``repair`` makes the mirrors agree again after a crash or a hand edit.

Layout beside the cards: ``history/NAME.jsonl``, ``locks/NAME.lock`` and ``stages.stamp``
(rewritten on every change, so readers can cache until it changes).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from loralab.errors import NotFound
from loralab.infra.model_registry import PRODUCTION_ALIAS, STAGING_ALIAS
from loralab.registry.cards import Stage, parse_stage
from loralab.registry.stages import Change, ReentrantLocks, StageChange, StageStore, StageUpdate
from loralab.registry.store import CardStore
from loralab.training.files import atomic_write_text, file_lock


class ModelRegistry(Protocol):
    """What the registry needs of MLflow (real: infra.model_registry.MlflowModelRegistry)."""

    def register(self, name: str, run_id: str, artifact: str = "adapter") -> str: ...
    def get_version(self, name: str, version: str) -> Any:
        """An object with version, run_id, stage (the loralab.stage tag), aliases; or None."""

    def versions(self, name: str) -> list[Any]: ...
    def alias_target(self, name: str, alias: str) -> str | None: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def set_stage_tag(self, name: str, version: str, stage: str) -> None: ...
    def log_card(self, run_id: str, path: Any) -> None: ...


def _stage_of(tag: str | None, version: str, production: str | None) -> Stage | None:
    if version == production:
        return Stage.PRODUCTION
    if tag is None:
        return None
    stage = parse_stage(tag)
    # a Production tag without the alias is stale: the alias is the truth
    return Stage.ARCHIVED if stage is Stage.PRODUCTION else stage


def point_alias(
    registry: ModelRegistry, name: str, alias: str, target: str | None
) -> Change | None:
    """Make ``alias`` of ``name`` name ``target`` (None: no version); the change, if any."""
    now = registry.alias_target(name, alias)
    if now == target:
        return None
    if target is None:
        registry.delete_alias(name, alias)
    else:
        registry.set_alias(name, alias, target)
    return Change(f"{name}@{alias}", "alias target", now, target)


class MlflowStageStore(StageStore):
    """Stages on MLflow aliases + version tags, mirrored in the cards and the history file."""

    def __init__(
        self, registry: ModelRegistry | Callable[[], ModelRegistry], cards: CardStore
    ) -> None:
        """``registry``: the MLflow registry, or a function that connects to it when first
        needed (reading the history needs no MLflow)."""
        self._registry = registry
        self.cards = cards
        self._locks = ReentrantLocks()

    @property
    def registry(self) -> ModelRegistry:
        if callable(self._registry):
            self._registry = self._registry()
        return self._registry

    # -- reading --------------------------------------------------------------------------
    def get(self, name: str, version: str) -> Stage | None:
        production = self.production(name)
        if version == production:
            return Stage.PRODUCTION
        found = self.registry.get_version(name, version)
        if found is None:
            raise NotFound(f"{name}@{version} is not in the MLflow model registry")
        return _stage_of(found.stage, version, production)

    def stages(self, name: str) -> dict[str, Stage]:
        production = self.production(name)
        out = {}
        for found in self.registry.versions(name):
            stage = _stage_of(found.stage, str(found.version), production)
            if stage is not None:
                out[str(found.version)] = stage
        return out

    def production(self, name: str) -> str | None:
        return self.registry.alias_target(name, PRODUCTION_ALIAS)

    def staging(self, name: str) -> str | None:
        staged = [int(v) for v, stage in self.stages(name).items() if stage is Stage.STAGING]
        return str(max(staged)) if staged else None

    def history(self, name: str) -> list[StageChange]:
        path = self._history_path(name)
        if not path.is_file():
            return []
        lines = path.read_text("utf-8").splitlines()
        return [StageChange.from_dict(json.loads(line)) for line in lines if line]

    def stamp(self) -> int:
        try:
            return int(self._stamp_path().read_text("utf-8") or 0)
        except (FileNotFoundError, ValueError):
            return 0

    # -- changing -------------------------------------------------------------------------
    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._locks.hold(name, lambda: file_lock(self.cards.root / "locks" / f"{name}.lock"))

    def set(self, name: str, version: str, stage: Stage, by: str, reason: str) -> StageUpdate:
        with self.lock(name):
            old = self.get(name, version)
            archived: list[str] = []
            if stage is Stage.PRODUCTION:
                archived = self._promote(name, version, by)
            else:
                self.registry.set_stage_tag(name, version, stage.value)
                if old is Stage.PRODUCTION:
                    self.registry.delete_alias(name, PRODUCTION_ALIAS)
            self._point_staging_alias(name)
            self._mirror_card(name, version, stage)
            self._append(StageChange(name, version, old, stage, by, time.time(), reason))
        return StageUpdate(old, archived)

    def _promote(self, name: str, version: str, by: str) -> list[str]:
        """Production for ``version``; the previous Production (and any stale Production tag)
        Archived. Returns the archived refs."""
        previous = self.production(name)
        self.registry.set_alias(name, PRODUCTION_ALIAS, version)
        self.registry.set_stage_tag(name, version, Stage.PRODUCTION.value)
        stale = {
            str(v.version)
            for v in self.registry.versions(name)
            if v.stage == Stage.PRODUCTION.value
        }
        others = sorted(({previous} | stale) - {None, version}, key=lambda v: int(str(v)))
        for other in others:
            assert other is not None
            self.registry.set_stage_tag(name, other, Stage.ARCHIVED.value)
            self._mirror_card(name, other, Stage.ARCHIVED)
            self._append(
                StageChange(
                    name,
                    other,
                    Stage.PRODUCTION,
                    Stage.ARCHIVED,
                    by,
                    time.time(),
                    f"replaced by {name}@{version}",
                )  # fmt: skip
            )
        return [f"{name}@{other}" for other in others]

    def _point_staging_alias(self, name: str) -> Change | None:
        """The ``staging`` alias on the newest version in Staging (none if there is none)."""
        return point_alias(self.registry, name, STAGING_ALIAS, self.staging(name))

    def _mirror_card(self, name: str, version: str, stage: Stage) -> None:
        """The card's ``stage`` (a version registered a moment ago has no card yet)."""
        if self.cards.exists(name, version):
            card = self.cards.read(name, version)
            self.cards.write(card.model_copy(update={"stage": stage}))

    def _append(self, change: StageChange) -> None:
        path = self._history_path(change.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(change.to_dict(), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._bump_stamp()

    def _bump_stamp(self) -> None:
        atomic_write_text(self._stamp_path(), str(max(self.stamp() + 1, time.time_ns())))

    def _history_path(self, name: str) -> Path:
        return self.cards.root / "history" / f"{name}.jsonl"

    def _stamp_path(self) -> Path:
        return self.cards.root / "stages.stamp"

    # -- repair ---------------------------------------------------------------------------
    def repair(self, name: str) -> list[Change]:
        with self.lock(name):
            changes = self._repair_tags(name)
            moved = self._point_staging_alias(name)
            if moved is not None:
                changes.append(moved)
            changes += self._repair_cards(name)
            if changes:
                self._bump_stamp()
        return changes

    def _repair_tags(self, name: str) -> list[Change]:
        """Stale Production tags -> Archived; registry versions without a card are reported."""
        production = self.production(name)
        carded = {c.version for c in self.cards.all_cards() if c.name == name}
        changes = []
        for found in self.registry.versions(name):
            version = str(found.version)
            if version not in carded:  # a crash between MLflow and the card write
                changes.append(Change(f"{name}@{version}", "missing card", None, None))
            if found.stage == Stage.PRODUCTION.value and version != production:
                self.registry.set_stage_tag(name, version, Stage.ARCHIVED.value)
                changes.append(
                    Change(
                        f"{name}@{version}",
                        "registry tag",
                        Stage.PRODUCTION.value,
                        Stage.ARCHIVED.value,
                    )  # fmt: skip
                )
        return changes

    def _repair_cards(self, name: str) -> list[Change]:
        """Every card's ``stage`` equal to the registry's."""
        changes = []
        for card in [c for c in self.cards.all_cards() if c.name == name]:
            try:
                stage = self.get(name, card.version)
            except NotFound:
                changes.append(Change(card.ref, "missing in registry", None, None))
                continue
            if stage is not None and stage is not card.stage:
                self.cards.write(card.model_copy(update={"stage": stage}))
                changes.append(Change(card.ref, "card stage", card.stage.value, stage.value))
        return changes
