"""Test helpers for the registry: an in-memory MLflow registry, an in-memory stage store and a
bag-of-words embedder."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loralab.registry.cards import Stage
from loralab.registry.service import RegistryService
from loralab.registry.stages import Change, StageChange, StageStore, StageUpdate
from loralab.settings import RegistrySettings, Settings, StorageSettings


class WordEmbedder:
    """Each word lights one of 384 dimensions (crc32): shared words -> similar vectors."""

    dim = 384

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(",", " ").replace(".", " ").split():
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
            if not out[row].any():
                out[row, 0] = 1.0
            out[row] /= np.linalg.norm(out[row])
        return out


@dataclass
class FakeVersion:
    name: str
    version: str
    run_id: str
    stage: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass
class MemoryRegistry:
    models: dict[str, list[FakeVersion]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    logged: list[tuple[str, str]] = field(default_factory=list)

    def register(self, name: str, run_id: str, artifact: str = "adapter") -> str:
        versions = self.models.setdefault(name, [])
        versions.append(FakeVersion(name, str(len(versions) + 1), run_id))
        return versions[-1].version

    def get_version(self, name: str, version: str) -> FakeVersion | None:
        return next((v for v in self.models.get(name, []) if v.version == version), None)

    def versions(self, name: str) -> list[FakeVersion]:
        return list(self.models.get(name, []))

    def alias_target(self, name: str, alias: str) -> str | None:
        return self.aliases.get((name, alias))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[(name, alias)] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop((name, alias), None)

    def set_stage_tag(self, name: str, version: str, stage: str) -> None:
        found = self.get_version(name, version)
        assert found is not None
        found.stage = stage

    def log_card(self, run_id: str, path: Any) -> None:
        self.logged.append((run_id, str(path)))

    def snapshot(self) -> tuple[Any, ...]:
        return (
            repr(self.models),
            repr(sorted(self.aliases.items())),
        )


class MemoryStageStore(StageStore):
    """A stage store in dicts (no MLflow, no files): the unit tests' stand-in for a real one.

    It passes the same contract test as ``MlflowStageStore``; nothing mirrors it, so ``repair``
    never has anything to do.
    """

    def __init__(self) -> None:
        self._stages: dict[str, dict[str, Stage]] = {}
        self._history: dict[str, list[StageChange]] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._stamp = 0

    def get(self, name: str, version: str) -> Stage | None:
        return self._stages.get(name, {}).get(version)

    def stages(self, name: str) -> dict[str, Stage]:
        return dict(self._stages.get(name, {}))

    def production(self, name: str) -> str | None:
        return self._newest(name, Stage.PRODUCTION)

    def staging(self, name: str) -> str | None:
        return self._newest(name, Stage.STAGING)

    def _newest(self, name: str, stage: Stage) -> str | None:
        found = [int(v) for v, s in self._stages.get(name, {}).items() if s is stage]
        return str(max(found)) if found else None

    def set(self, name: str, version: str, stage: Stage, by: str, reason: str) -> StageUpdate:
        with self.lock(name):
            old = self.get(name, version)
            archived = []
            if stage is Stage.PRODUCTION:
                previous = self.production(name)
                if previous is not None and previous != version:
                    self._move(name, previous, Stage.ARCHIVED, by, f"replaced by {name}@{version}")
                    archived.append(f"{name}@{previous}")
            self._move(name, version, stage, by, reason)
        return StageUpdate(old, archived)

    def _move(self, name: str, version: str, stage: Stage, by: str, reason: str) -> None:
        old = self.get(name, version)
        self._stages.setdefault(name, {})[version] = stage
        change = StageChange(name, version, old, stage, by, time.time(), reason)
        self._history.setdefault(name, []).append(change)
        self._stamp += 1

    def history(self, name: str) -> list[StageChange]:
        return list(self._history.get(name, []))

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.RLock())
        with lock:
            yield

    def repair(self, name: str) -> list[Change]:
        return []

    def stamp(self) -> int:
        return self._stamp


def fake_run(results: Path, run_id: str) -> None:
    """A finished run folder as the resolver needs it (config, adapter folder, model info)."""
    root = results / "exp" / run_id
    (root / "artifacts" / "adapter").mkdir(parents=True)
    (root / "config.yaml").write_text("experiment: exp\n")
    info = {"base_model": "tiny", "labels": ["neg", "pos"], "max_length": 32, "language": "en"}
    (root / "artifacts" / "model_info.json").write_text(json.dumps(info))


def make_settings(tmp_path: Path, **registry: Any) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        registry=RegistrySettings(card_dir=tmp_path / "cards", **registry),
    )


def register(
    service: RegistryService,
    name: str = "sentiment",
    *,
    description: str = "English sentiment classifier for product reviews",
    accuracy: float = 0.9,
    language: str = "English",
    base_model: str = "minilm-l6",
    task: str = "sentiment",
    labels: tuple[str, ...] = ("negative", "positive"),
    dataset: str = "reviews",
    fingerprint: str = "fp-reviews-1",
    tags: dict[str, str] | None = None,
    learning_rate: float = 1e-3,
) -> Any:
    return service.register_run(
        name=name,
        run_id=f"run-{time.monotonic_ns()}",
        base_model=base_model,
        language=language,
        labels=list(labels),
        metrics={"accuracy": accuracy, "macro_f1": accuracy - 0.01},
        dataset={"name": dataset, "version": "v1", "fingerprint": fingerprint},
        lora={"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None},
        training={"learning_rate": learning_rate, "epochs": 3.0, "batch_size": 32},
        created_by="alice",
        task=task,
        description=description,
        tags=tags or {},
    )


def card_dict(**changes: Any) -> dict[str, Any]:
    vector = [0.0] * 384
    vector[0] = 1.0
    values: dict[str, Any] = {
        "name": "m",
        "version": "1",
        "run_id": "r1",
        "base_model": "minilm-l6",
        "language": "English",
        "task": "sentiment",
        "description": "d",
        "labels": ["a", "b"],
        "metrics": {"accuracy": 0.5},
        "tags": {},
        "dataset": {"name": "ds", "version": "v1", "fingerprint": "f"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
        "training": {},
        "created_by": "alice",
        "created_at": 1.0,
        "stage": "Staging",
        "embedding": vector,
    }
    values.update(changes)
    return values
