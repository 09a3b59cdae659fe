"""The job state machine and its stepper view."""

from __future__ import annotations

import pytest

from loralab.jobs import states


def test_happy_path_is_allowed_step_by_step() -> None:
    for old, new in zip(states.PIPELINE, states.PIPELINE[1:], strict=False):
        states.check_transition(old, new)


@pytest.mark.parametrize("end", sorted(states.TERMINAL))
def test_terminal_states_go_nowhere(end: str) -> None:
    assert states.is_terminal(end)
    for target in states.ALL_STATES:
        assert not states.can_transition(end, target)


@pytest.mark.parametrize("state", sorted(states.ACTIVE))
def test_every_active_state_can_fail_or_be_cancelled(state: str) -> None:
    assert states.can_transition(state, states.FAILED)
    assert states.can_transition(state, states.CANCELLED)


def test_skipping_ahead_is_refused() -> None:
    with pytest.raises(states.InvalidTransition, match="queued to succeeded"):
        states.check_transition(states.QUEUED, states.SUCCEEDED)
    assert not states.can_transition(states.QUEUED, states.TRAINING)


def test_a_running_job_whose_worker_died_may_be_queued_again() -> None:
    for state in states.RUNNING:
        assert states.can_transition(state, states.QUEUED)


def statuses(job: dict[str, str]) -> list[str]:
    return [step["status"] for step in states.stepper(job)]


def test_stepper_marks_done_current_pending() -> None:
    steps = states.stepper({"state": "training"})
    assert [s["name"] for s in steps] == list(states.PIPELINE)
    assert statuses({"state": "training"}) == [
        "done",
        "done",
        "current",
        "pending",
        "pending",
        "pending",
    ]
    assert statuses({"state": "queued"})[0] == "current"
    assert statuses({"state": "succeeded"}) == ["done"] * 6


def test_stepper_shows_where_a_job_failed_or_was_cancelled() -> None:
    assert statuses({"state": "failed", "last_step": "training"}) == [
        "done",
        "done",
        "failed",
        "skipped",
        "skipped",
        "skipped",
    ]
    assert statuses({"state": "cancelled"}) == ["cancelled"] + ["skipped"] * 5
