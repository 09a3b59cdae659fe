"""The run folder: results/<experiment>/<run_id>/ with config, metrics, logs and artifacts."""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loralab.training.config import TrainConfig, save_config
from loralab.training.files import atomic_write_json

RUN_ID_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyz-")


class RunNotFound(LookupError):
    """No run folder with this id."""


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def experiment(self) -> str:
        return self.root.parent.name

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs.txt"

    @property
    def state(self) -> Path:
        """Status, tracker id, timestamps: what resume and `runs list` need."""
        return self.root / "run.json"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def adapter(self) -> Path:
        return self.artifacts / "adapter"

    @property
    def tokenizer(self) -> Path:
        return self.artifacts / "tokenizer"

    @property
    def label_map(self) -> Path:
        return self.artifacts / "label_map.json"

    @property
    def model_info(self) -> Path:
        return self.artifacts / "model_info.json"

    @property
    def checkpoints(self) -> Path:
        return self.artifacts / "checkpoints"

    @property
    def confusion_matrix_png(self) -> Path:
        return self.root / "confusion_matrix.png"


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def create_run(results_dir: Path, config: TrainConfig, run_id: str | None = None) -> RunPaths:
    """Create a new run folder with its complete config.yaml.

    ``run_id``: chosen by the caller (a job records it before training starts); default new.
    """
    paths = RunPaths(results_dir / config.experiment / (run_id or new_run_id()))
    paths.artifacts.mkdir(parents=True)
    save_config(config, paths.config)
    return paths


def discard_run(paths: RunPaths) -> None:
    shutil.rmtree(paths.root, ignore_errors=True)


def read_state(paths: RunPaths) -> dict[str, Any]:
    try:
        data = json.loads(paths.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_state(paths: RunPaths, **changes: Any) -> dict[str, Any]:
    state = read_state(paths)
    state.update(changes)
    atomic_write_json(paths.state, state, sort_keys=True)
    return state


def read_metrics(paths: RunPaths) -> dict[str, Any]:
    try:
        data = json.loads(paths.metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_run(results_dir: Path, run_id: str) -> RunPaths:
    """Locate a run folder by id (or unique id prefix) under any experiment."""
    if not run_id or not set(run_id) <= RUN_ID_CHARS:
        raise RunNotFound(f"no run {run_id!r}: run ids look like 20261127-001812-a1b2c3")
    matches = sorted(p for p in results_dir.glob(f"*/{run_id}*") if (p / "config.yaml").is_file())
    if not matches:
        raise RunNotFound(f"no run {run_id!r} under {results_dir}")
    exact = [p for p in matches if p.name == run_id]
    if exact:
        return RunPaths(exact[0])
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:5])
        raise RunNotFound(f"run id {run_id!r} is ambiguous: {names}")
    return RunPaths(matches[0])


def list_runs(results_dir: Path) -> list[RunPaths]:
    """All run folders, newest first."""
    if not results_dir.is_dir():
        return []
    runs = [RunPaths(p.parent) for p in results_dir.glob("*/*/config.yaml")]
    return sorted(runs, key=lambda r: r.run_id, reverse=True)
