"""Errors of the training library that callers catch without importing torch."""

from __future__ import annotations

import errno

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class TrainingFailed(RuntimeError):
    """Training started but could not finish (non-finite loss, a crash in a step)."""


class DiskFull(TrainingFailed):
    """No space was left while the run wrote a checkpoint or its model; the run keeps its last
    complete checkpoint and resumes from it once space is freed."""


class OutOfMemory(TrainingFailed):
    """Even a batch of one example does not fit in memory on this device."""


def is_disk_full(err: BaseException) -> bool:
    """True when ``err``, or an error it was raised from, says the disk (or quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if type(current).__name__ in {"DiskFull", "StorageFull"}:
            return True
        current = current.__cause__ or current.__context__
    return False
