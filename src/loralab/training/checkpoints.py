"""Checkpoint retention (keep best, last and fastest) and the completeness marker.

A checkpoint folder counts only once its marker file exists. The marker is written atomically
after every file of the checkpoint is on disk, so a crash mid-save leaves a folder without a
marker, which resume ignores and removes.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from loralab.training.files import atomic_write_json

MARKER = "loralab-checkpoint.json"
PROTECT_FILE = "PROTECTED"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    metric: float | None  # validation metric at this step; None when saved without evaluation
    protected: bool = False  # used by a registered model or a running job: never deleted


@dataclass(frozen=True)
class Retention:
    best: int | None
    last: int | None
    fastest: int | None
    delete: tuple[int, ...]


def decide_retention(
    checkpoints: list[CheckpointInfo], higher_is_better: bool, tolerance: float
) -> Retention:
    """Decide which checkpoints to keep: best, last, fastest and every protected one.

    best: the best validation metric (the earliest on ties). last: the most recent step, for
    resume. fastest: the earliest checkpoint whose metric is within ``tolerance`` of the best,
    i.e. the cheapest good-enough model.
    """
    if not checkpoints:
        return Retention(None, None, None, ())
    ordered = sorted(checkpoints, key=lambda c: c.step)
    last = ordered[-1].step
    # Only evaluated checkpoints compete; NaN never wins.
    scored = [(c.step, c.metric) for c in ordered if c.metric is not None and c.metric == c.metric]
    best = fastest = None
    if scored:
        sign = 1.0 if higher_is_better else -1.0
        best, best_metric = max(scored, key=lambda item: (sign * item[1], -item[0]))
        fastest = next(
            step for step, metric in scored if sign * (best_metric - metric) <= tolerance
        )
    keep = {best, last, fastest} | {c.step for c in ordered if c.protected}
    delete = tuple(c.step for c in ordered if c.step not in keep)
    return Retention(best, last, fastest, delete)


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def mark_complete(checkpoint: Path, step: int, metric: float | None) -> None:
    atomic_write_json(checkpoint / MARKER, {"step": step, "metric": metric}, sort_keys=True)


def read_checkpoints(folder: Path) -> list[tuple[Path, CheckpointInfo]]:
    """Complete checkpoints in ``folder`` (those with a marker), oldest first."""
    found: list[tuple[Path, CheckpointInfo]] = []
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        step = checkpoint_step(child)
        marker = child / MARKER
        if step is None or not marker.is_file():
            continue
        try:
            metric = json.loads(marker.read_text(encoding="utf-8")).get("metric")
        except (OSError, ValueError):
            continue
        info = CheckpointInfo(step, metric, (child / PROTECT_FILE).exists())
        found.append((child, info))
    return sorted(found, key=lambda item: item[1].step)


def remove_incomplete(folder: Path) -> list[Path]:
    """Delete checkpoint folders that never got their marker (a crash mid-save)."""
    removed = []
    if folder.is_dir():
        for child in folder.iterdir():
            if checkpoint_step(child) is not None and not (child / MARKER).is_file():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def last_complete(folder: Path) -> Path | None:
    checkpoints = read_checkpoints(folder)
    return checkpoints[-1][0] if checkpoints else None


def apply_retention(folder: Path, higher_is_better: bool, tolerance: float) -> Retention:
    """Apply :func:`decide_retention` to the checkpoints on disk and delete the rest."""
    found = read_checkpoints(folder)
    retention = decide_retention([info for _, info in found], higher_is_better, tolerance)
    doomed = set(retention.delete)
    for path, info in found:
        if info.step in doomed:
            shutil.rmtree(path, ignore_errors=True)
    return retention
