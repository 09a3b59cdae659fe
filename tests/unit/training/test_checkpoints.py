"""Checkpoint retention (best, last, fastest, protected) and the on-disk completeness marker."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from loralab.training.checkpoints import (
    MARKER,
    PROTECT_FILE,
    CheckpointInfo,
    Retention,
    apply_retention,
    decide_retention,
    last_complete,
    mark_complete,
    read_checkpoints,
    remove_incomplete,
)


def infos(*pairs: tuple[int, float | None]) -> list[CheckpointInfo]:
    return [CheckpointInfo(step, metric) for step, metric in pairs]


# -- decide_retention ---------------------------------------------------------------------------


def test_empty_list() -> None:
    assert decide_retention([], higher_is_better=True, tolerance=0.01) == Retention(
        None, None, None, ()
    )


def test_higher_is_better() -> None:
    ckpts = infos((100, 0.80), (200, 0.90), (300, 0.95), (400, 0.93), (500, 0.91))
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.02)
    assert r.best == 300
    assert r.last == 500
    assert r.fastest == 300  # 0.90 is 0.05 below the best: not within 0.02
    assert r.delete == (100, 200, 400)


def test_fastest_is_the_earliest_within_tolerance() -> None:
    ckpts = infos((100, 0.80), (200, 0.94), (300, 0.95), (400, 0.945), (500, 0.70))
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.02)
    assert (r.best, r.last, r.fastest) == (300, 500, 200)
    assert r.delete == (100, 400)


def test_fastest_with_zero_tolerance_is_best() -> None:
    ckpts = infos((100, 0.80), (200, 0.94), (300, 0.95))
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.0)
    assert r.fastest == r.best == 300


def test_lower_is_better_loss() -> None:
    ckpts = infos((100, 0.90), (200, 0.41), (300, 0.40), (400, 0.38), (500, 0.45))
    r = decide_retention(ckpts, higher_is_better=False, tolerance=0.025)
    assert r.best == 400
    assert r.last == 500
    assert r.fastest == 300  # 0.41 is 0.03 above 0.38: outside; 0.40 is inside
    assert r.delete == (100, 200)


def test_lower_is_better_does_not_pick_the_highest() -> None:
    r = decide_retention(infos((1, 0.2), (2, 5.0)), higher_is_better=False, tolerance=0.0)
    assert r.best == 1


def test_ties_pick_the_earliest_best() -> None:
    ckpts = infos((100, 0.5), (200, 0.9), (300, 0.9), (400, 0.9), (500, 0.6))
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.0)
    assert r.best == 200
    assert r.fastest == 200
    assert r.delete == (100, 300, 400)


def test_ties_pick_the_earliest_best_for_loss() -> None:
    r = decide_retention(infos((10, 0.3), (20, 0.1), (30, 0.1)), False, 0.0)
    assert r.best == 20


def test_input_order_does_not_matter() -> None:
    ckpts = infos((300, 0.9), (100, 0.9), (200, 0.5))
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.0)
    assert (r.best, r.last, r.fastest) == (100, 300, 100)
    assert r.delete == (200,)


def test_unevaluated_checkpoint_can_be_last_but_not_best() -> None:
    ckpts = infos((100, 0.7), (200, 0.8), (300, None))
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.0)
    assert r.best == 200
    assert r.fastest == 200
    assert r.last == 300
    assert r.delete == (100,)


def test_unevaluated_checkpoints_are_never_best_or_fastest() -> None:
    ckpts = infos((100, None), (200, 0.5), (300, None), (400, 0.6), (500, None))
    r = decide_retention(ckpts, higher_is_better=False, tolerance=1.0)
    assert r.best == 200
    assert r.fastest == 200  # the None at step 100 is earlier but has no metric
    assert r.last == 500
    assert r.delete == (100, 300, 400)


def test_only_unevaluated_checkpoints() -> None:
    r = decide_retention(infos((1, None), (2, None)), higher_is_better=True, tolerance=0.1)
    assert r == Retention(best=None, last=2, fastest=None, delete=(1,))


def test_nan_metric_is_never_best() -> None:
    r = decide_retention(infos((1, float("nan")), (2, 0.5), (3, 0.4)), True, 0.0)
    assert r.best == 2
    assert r.delete == (1,)


def test_protected_are_never_deleted() -> None:
    ckpts = [
        CheckpointInfo(100, 0.1, protected=True),
        CheckpointInfo(200, 0.2),
        CheckpointInfo(300, 0.9),
        CheckpointInfo(400, 0.3, protected=True),
        CheckpointInfo(500, 0.4),
    ]
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.0)
    assert (r.best, r.last, r.fastest) == (300, 500, 300)
    assert r.delete == (200,)


def test_everything_not_kept_is_deleted() -> None:
    ckpts = infos(*[(step, step / 1000) for step in range(10, 110, 10)])
    r = decide_retention(ckpts, higher_is_better=True, tolerance=0.0)
    assert r.best == r.last == r.fastest == 100
    assert r.delete == tuple(range(10, 100, 10))


@st.composite
def checkpoint_lists(draw: st.DrawFn) -> list[CheckpointInfo]:
    steps = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=15))
    metric = st.one_of(
        st.none(), st.floats(-10, 10, allow_nan=False), st.sampled_from([0.5, 0.9, float("nan")])
    )
    return [CheckpointInfo(s, draw(metric), draw(st.booleans())) for s in steps]


@settings(max_examples=300, deadline=None)
@given(
    checkpoints=checkpoint_lists(),
    higher_is_better=st.booleans(),
    tolerance=st.floats(0.0, 1.0),
)
def test_retention_properties(
    checkpoints: list[CheckpointInfo], higher_is_better: bool, tolerance: float
) -> None:
    r = decide_retention(checkpoints, higher_is_better, tolerance)
    all_steps = {c.step for c in checkpoints}
    deleted = set(r.delete)
    kept = {s for s in (r.best, r.last, r.fastest) if s is not None}
    kept |= {c.step for c in checkpoints if c.protected}

    assert len(r.delete) == len(deleted)  # no step deleted twice
    assert kept.isdisjoint(deleted)  # best, last, fastest and protected survive
    assert kept | deleted == all_steps
    if checkpoints:
        assert r.last == max(all_steps)
    scored = {
        c.step: c.metric for c in checkpoints if c.metric is not None and c.metric == c.metric
    }
    if scored:
        assert r.best is not None and r.fastest is not None
        best = scored[r.best]
        values = list(scored.values())
        assert best == (max(values) if higher_is_better else min(values))
        assert r.fastest <= r.best
        gap = scored[r.fastest] - best
        assert (-gap if higher_is_better else gap) <= tolerance + 1e-9
    else:
        assert r.best is None and r.fastest is None


# -- on disk ----------------------------------------------------------------------------------


def make_checkpoint(folder: Path, step: int, metric: float | None, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        mark_complete(path, step, metric)
    return path


def test_mark_complete_writes_marker_atomically(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path, 40, 0.75)
    assert json.loads((path / MARKER).read_text()) == {"step": 40, "metric": 0.75}
    assert [p.name for p in path.iterdir() if p.name.endswith(".tmp")] == []


def test_read_checkpoints_ignores_folders_without_marker(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 30, 0.5)
    make_checkpoint(tmp_path, 10, None)
    make_checkpoint(tmp_path, 20, 0.9, complete=False)
    (tmp_path / "not-a-checkpoint").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "checkpoint-5").write_text("a file, not a folder")
    protected = make_checkpoint(tmp_path, 100, 0.1)
    (protected / PROTECT_FILE).touch()

    found = read_checkpoints(tmp_path)
    assert [info for _, info in found] == [
        CheckpointInfo(10, None),
        CheckpointInfo(30, 0.5),
        CheckpointInfo(100, 0.1, protected=True),
    ]
    assert [path.name for path, _ in found] == ["checkpoint-10", "checkpoint-30", "checkpoint-100"]


def test_read_checkpoints_orders_steps_numerically(tmp_path: Path) -> None:
    for step in (9, 100, 20):
        make_checkpoint(tmp_path, step, 0.5)
    assert [info.step for _, info in read_checkpoints(tmp_path)] == [9, 20, 100]


def test_read_checkpoints_skips_unreadable_marker(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path, 10, 0.5)
    (path / MARKER).write_text("{not json")
    assert read_checkpoints(tmp_path) == []


def test_read_checkpoints_missing_folder(tmp_path: Path) -> None:
    assert read_checkpoints(tmp_path / "absent") == []
    assert remove_incomplete(tmp_path / "absent") == []
    assert last_complete(tmp_path / "absent") is None


def test_remove_incomplete_deletes_crashed_save(tmp_path: Path) -> None:
    complete = make_checkpoint(tmp_path, 10, 0.5)
    crashed = make_checkpoint(tmp_path, 20, None, complete=False)
    (crashed / f".{MARKER}.tmp").write_text('{"step": 2')  # the atomic write never finished
    other = tmp_path / "logs"
    other.mkdir()

    removed = remove_incomplete(tmp_path)

    assert removed == [crashed]
    assert not crashed.exists()
    assert complete.is_dir() and (complete / MARKER).is_file()
    assert other.is_dir()


def test_last_complete_is_the_newest_complete(tmp_path: Path) -> None:
    assert last_complete(tmp_path) is None
    make_checkpoint(tmp_path, 10, 0.5)
    newest = make_checkpoint(tmp_path, 200, None)
    make_checkpoint(tmp_path, 30, 0.9)
    make_checkpoint(tmp_path, 300, 0.9, complete=False)  # newer, but never finished
    assert last_complete(tmp_path) == newest


def test_apply_retention_deletes_the_right_folders(tmp_path: Path) -> None:
    for step, metric in [(10, 0.5), (20, 0.8), (30, 0.79), (40, 0.9), (50, 0.7), (60, None)]:
        make_checkpoint(tmp_path, step, metric)

    r = apply_retention(tmp_path, higher_is_better=True, tolerance=0.15)

    assert (r.best, r.last, r.fastest) == (40, 60, 20)
    assert r.delete == (10, 30, 50)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == ["checkpoint-20", "checkpoint-40", "checkpoint-60"]


def test_apply_retention_never_deletes_protected(tmp_path: Path) -> None:
    for step, metric in [(10, 0.1), (20, 0.2), (30, 0.9), (40, 0.3)]:
        make_checkpoint(tmp_path, step, metric)
    (tmp_path / "checkpoint-10" / PROTECT_FILE).touch()
    (tmp_path / "checkpoint-20" / PROTECT_FILE).write_text("registered model 7")

    r = apply_retention(tmp_path, higher_is_better=True, tolerance=0.0)

    assert r.delete == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-10",
        "checkpoint-20",
        "checkpoint-30",
        "checkpoint-40",
    ]
    assert (tmp_path / "checkpoint-10" / "adapter_model.safetensors").is_file()


def test_apply_retention_leaves_incomplete_and_other_folders(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 10, 0.1)
    make_checkpoint(tmp_path, 20, 0.2)
    make_checkpoint(tmp_path, 30, 0.3)
    in_progress = make_checkpoint(tmp_path, 40, None, complete=False)  # being saved right now
    r = apply_retention(tmp_path, higher_is_better=True, tolerance=0.0)
    assert r.delete == (10, 20)
    assert in_progress.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-30", "checkpoint-40"]
