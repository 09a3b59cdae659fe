"""What a sweep hands back: a row per trial, the best one, a plot of the metric by trial, and
the best settings as a recipe that ``loralab train`` runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from loralab.training.config import TrainConfig
from loralab.training.files import atomic_write_text

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


@dataclass(frozen=True)
class TrialRow:
    """One trial as the summary shows it."""

    number: int
    state: str  # RUNNING, COMPLETE, PRUNED, FAIL, WAITING; INTERRUPTED: stopped by the user
    value: float | None
    params: dict[str, Any]
    run_id: str | None = None
    job_id: str | None = None
    seconds: float | None = None
    last_step: int | None = None  # the last evaluation reported (where a pruned trial stopped)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def rows_of(trials: Sequence[FrozenTrial]) -> list[TrialRow]:
    """The trials of a study as rows, in trial order."""
    rows = []
    for trial in sorted(trials, key=lambda t: t.number):
        attrs = trial.user_attrs
        seconds = None
        if trial.datetime_start and trial.datetime_complete:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        steps = trial.intermediate_values
        rows.append(
            TrialRow(
                number=trial.number,
                state="INTERRUPTED" if attrs.get("interrupted") else trial.state.name,
                value=trial.value if trial.state.name == "COMPLETE" else _last(steps),
                params=dict(attrs.get("settings") or trial.params),
                run_id=attrs.get("run_id"),
                job_id=attrs.get("job_id"),
                seconds=seconds,
                last_step=max(steps) if steps else None,
                error=attrs.get("error"),
            )
        )
    return rows


def _last(steps: dict[int, float]) -> float | None:
    return steps[max(steps)] if steps else None


def best_row(rows: Sequence[TrialRow]) -> TrialRow | None:
    """The completed trial with the highest value (the earliest of equals)."""
    done = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    return max(done, key=lambda r: (r.value, -r.number)) if done else None


def plot_metric(rows: Sequence[TrialRow], metric: str, title: str, path: Path) -> Path:
    """The metric by trial (completed: dots; pruned: crosses at their last evaluation) and the
    best so far, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    try:
        for state, marker, colour in (("COMPLETE", "o", "tab:blue"), ("PRUNED", "x", "tab:gray")):
            points = [(r.number, r.value) for r in rows if r.state == state and r.value is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.scatter(xs, ys, marker=marker, color=colour, label=state.lower(), zorder=3)
        best: list[tuple[int, float]] = []
        for row in rows:
            if row.state == "COMPLETE" and row.value is not None:
                top = max(row.value, best[-1][1]) if best else row.value
                best.append((row.number, top))
        last = max((r.number for r in rows), default=0)
        if best:
            best.append((last, best[-1][1]))  # the line runs on to the last trial
            xs, ys = zip(*best, strict=True)
            ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.5, last + 0.5)
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if best or any(r.state == "PRUNED" for r in rows):
            ax.legend(loc="lower right")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_recipe(config: TrainConfig, path: Path, header: str) -> Path:
    """The best trial's complete settings as a recipe (a comment header, then the YAML)."""
    body = yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write_text(path, comment + body)
    return path
