"""The fixed set of reasons a job ends without success (the ``reason`` label of
``task_failure_total``), and the mapping from what went wrong to one of them."""

from __future__ import annotations

from typing import Final

from loralab.training.errors import is_disk_full

DATA: Final = "data"  # the data or the job's input is invalid (a user can fix it)
OOM: Final = "oom"  # out of memory (host or GPU)
NAN: Final = "nan"  # the loss became NaN/inf: training diverged
DISK_FULL: Final = "disk_full"  # no space left where the run or the data is written
WORKER_LOST: Final = "worker_lost"  # the job kept killing its worker; the queue gave up
CANCELLED: Final = "cancelled"  # a user cancelled it
ERROR: Final = "error"  # anything else
REASONS: Final = (DATA, OOM, NAN, DISK_FULL, WORKER_LOST, CANCELLED, ERROR)

_DATA_ERRORS = frozenset({"InvalidInput", "NotFound", "DatasetInvalid", "PayloadTooLarge"})
_OOM_ERRORS = frozenset({"OutOfMemoryError", "MemoryError"})


def failure_reason(err: BaseException) -> str:
    """The reason for an exception that ended a job (by class, torch not imported)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if is_disk_full(err):
        return DISK_FULL
    if names & _OOM_ERRORS or "out of memory" in str(err).lower():
        return OOM
    if "TrainingFailed" in names and "loss became" in str(err):
        return NAN
    if names & _DATA_ERRORS:
        return DATA
    return ERROR


def known_reason(value: str | None) -> str:
    """A stored reason if it is one of :data:`REASONS`, else ``error`` (old rows: NULL)."""
    return value if value in REASONS else ERROR
