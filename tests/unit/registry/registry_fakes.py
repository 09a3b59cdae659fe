"""Test helpers for the registry: an in-memory MLflow registry and a bag-of-words embedder."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loralab.registry.service import RegistryService
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
