"""The training-job state machine and the step view shown by the UI and the API.

queued -> validating -> training -> evaluating -> registering -> succeeded, and from any
non-terminal state to failed or cancelled. A job whose worker died goes back through the
running states on its next attempt (validating again, then training from its checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

QUEUED = "queued"
VALIDATING = "validating"
TRAINING = "training"
EVALUATING = "evaluating"
REGISTERING = "registering"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

# The happy path, in order: what the stepper shows.
PIPELINE: tuple[str, ...] = (QUEUED, VALIDATING, TRAINING, EVALUATING, REGISTERING, SUCCEEDED)
RUNNING: frozenset[str] = frozenset({VALIDATING, TRAINING, EVALUATING, REGISTERING})
TERMINAL: frozenset[str] = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE: frozenset[str] = frozenset({QUEUED} | RUNNING)
ALL_STATES: frozenset[str] = ACTIVE | TERMINAL

# Any running state may also go back to queued (its worker died: the recovery sweep requeues
# it) or to validating (a new delivery took over a stale lease).
_RESTART = frozenset({QUEUED, VALIDATING, FAILED, CANCELLED})
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({VALIDATING, FAILED, CANCELLED}),
    VALIDATING: _RESTART | {TRAINING},
    TRAINING: _RESTART | {EVALUATING},
    EVALUATING: _RESTART | {TRAINING, REGISTERING, SUCCEEDED},
    REGISTERING: _RESTART | {SUCCEEDED},
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

StepStatus = Literal["done", "current", "pending", "failed", "cancelled", "skipped"]


class InvalidTransition(ValueError):
    """A state change the machine does not allow."""


def is_terminal(state: str) -> bool:
    """True for succeeded, failed and cancelled."""
    return state in TERMINAL


def can_transition(old: str, new: str) -> bool:
    """Whether a job in ``old`` may move to ``new``."""
    return new in TRANSITIONS.get(old, frozenset())


def check_transition(old: str, new: str) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is allowed."""
    if not can_transition(old, new):
        raise InvalidTransition(f"a job cannot go from {old} to {new}")


def stepper(job: Mapping[str, Any]) -> list[dict[str, str]]:
    """The pipeline as steps ``{"name", "status"}`` for a job with ``state`` (and, for a job
    that ended early, ``last_step``: the step it was in when it failed or was cancelled)."""
    state = str(job["state"])
    if state in PIPELINE:
        current = PIPELINE.index(state)
        ending: StepStatus = "done" if state == SUCCEEDED else "current"
    else:
        last = str(job.get("last_step") or QUEUED)
        current = PIPELINE.index(last) if last in PIPELINE else 0
        ending = "failed" if state == FAILED else "cancelled"
    steps: list[dict[str, str]] = []
    for index, name in enumerate(PIPELINE):
        status: StepStatus
        if index < current:
            status = "done"
        elif index == current:
            status = ending
        else:
            status = "pending" if state not in TERMINAL else "skipped"
        steps.append({"name": name, "status": status})
    return steps
