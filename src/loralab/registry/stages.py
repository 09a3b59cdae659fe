"""Stages of registered model versions: the allowed transitions and the store that keeps them.

Allowed: new -> Staging, Staging -> Production, Staging -> Archived, Production -> Archived,
Archived -> Staging. Promoting a version to Production archives the previous Production.

:class:`StageStore` is the one interface through which the registry service and the prediction
service read and change stages, in the way MLflow separates ``AbstractStore`` from its file and
SQL stores: the MLflow implementation is ``loralab.registry.mlflow_stages.MlflowStageStore``
(files backend), the database one ``loralab.registry.db_store.DbStageStore``. Every
implementation must pass the contract test in ``tests/helpers/stage_store_contract.py``.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from loralab.errors import Conflict
from loralab.registry.cards import Stage

ALLOWED: dict[Stage | None, frozenset[Stage]] = {
    None: frozenset({Stage.STAGING}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}

ALLOWED_TEXT = (
    "new -> Staging, Staging -> Production, Staging -> Archived, Production -> Archived, "
    "Archived -> Staging"
)


def check_transition(current: Stage | None, target: Stage) -> None:
    """Conflict unless ``current -> target`` is allowed."""
    if target not in ALLOWED[current]:
        name = current.value if current else "new"
        raise Conflict(
            f"transition {name} -> {target.value} is not allowed; allowed: {ALLOWED_TEXT}"
        )


@dataclass(frozen=True)
class StageChange:
    """One line of a model's stage history: who moved which version from where to where."""

    model: str
    version: str
    from_stage: Stage | None  # None: a new version
    to_stage: Stage
    by: str
    at: float  # seconds since the epoch
    reason: str = ""

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """The stored and printed form (keys ``model, version, from, to, by, at, reason``)."""
        return {
            "model": self.model,
            "version": self.version,
            "from": self.from_stage.value if self.from_stage else None,
            "to": self.to_stage.value,
            "by": self.by,
            "at": self.at,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageChange:
        return cls(
            model=str(data["model"]),
            version=str(data["version"]),
            from_stage=Stage(data["from"]) if data.get("from") else None,
            to_stage=Stage(data["to"]),
            by=str(data["by"]),
            at=float(data["at"]),
            reason=str(data.get("reason") or ""),
        )


class StageUpdate(NamedTuple):
    """What :meth:`StageStore.set` did: the version's stage before, and the versions it archived
    (``NAME@VERSION``; only a promotion to Production archives any)."""

    old: Stage | None
    archived: list[str]


@dataclass(frozen=True)
class Change:
    """One thing a repair (``reconcile``) changed or found: ``what`` of ``ref``, old -> new."""

    ref: str
    what: str
    old: str | None
    new: str | None


class StageStore(abc.ABC):
    """Where the stages of model versions live; the one truth the registry and serving read.

    Contract (tested for every implementation):

    * ``get`` is None for a version that was never given a stage;
    * ``set`` records the change in the history, and a promotion to Production archives the
      previous Production in the same step, so a model has at most one Production version,
      also when promotions race (threads or processes);
    * ``staging`` is the newest version (highest number) in Staging;
    * ``lock(name)`` serialises changes of one model; it is re-entrant in one thread, so a
      caller can read, check and ``set`` under one lock;
    * ``stamp`` changes whenever a stage changes, so readers may cache until it does.
    """

    @abc.abstractmethod
    def get(self, name: str, version: str) -> Stage | None:
        """The stage of ``name@version``; None if it has none yet. An implementation backed by
        a registry that does not know the version raises NotFound."""

    @abc.abstractmethod
    def stages(self, name: str) -> dict[str, Stage]:
        """Every version of ``name`` that has a stage, version -> stage."""

    @abc.abstractmethod
    def production(self, name: str) -> str | None:
        """The Production version of ``name``, if any."""

    @abc.abstractmethod
    def staging(self, name: str) -> str | None:
        """The newest version of ``name`` in Staging, if any."""

    @abc.abstractmethod
    def set(self, name: str, version: str, stage: Stage, by: str, reason: str) -> StageUpdate:
        """Move ``name@version`` to ``stage`` (no transition rules here: the caller checks)."""

    @abc.abstractmethod
    def history(self, name: str) -> list[StageChange]:
        """Every stage change of ``name``, oldest first; empty for an unknown model."""

    @abc.abstractmethod
    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold ``name``'s lock (re-entrant in one thread) until the block ends."""

    @abc.abstractmethod
    def repair(self, name: str) -> list[Change]:
        """Make every copy of ``name``'s stages agree with the truth after a crash or a hand
        edit; report what was changed or cannot be repaired (empty when all agree)."""

    @abc.abstractmethod
    def stamp(self) -> int:
        """A number that changes whenever any stage changes."""


class ReentrantLocks:
    """Per-name re-entrancy for a lock that is not re-entrant itself (a file lock): the outer
    ``hold`` of a name in a thread takes the real lock, nested ones only count."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def hold(
        self, name: str, take: Callable[[], contextlib.AbstractContextManager[None]]
    ) -> Iterator[None]:
        depth: dict[str, int] = self._local.__dict__.setdefault("depth", {})
        if depth.get(name):
            depth[name] += 1
            try:
                yield
            finally:
                depth[name] -= 1
            return
        with take():
            depth[name] = 1
            try:
                yield
            finally:
                depth[name] = 0
