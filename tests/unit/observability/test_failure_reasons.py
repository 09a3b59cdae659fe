"""Job failures map to the fixed reason set of task_failure_total."""

from __future__ import annotations

import errno

import pytest

from loralab.datasets.service import DatasetInvalid
from loralab.errors import Conflict, InvalidInput, NotFound, StorageFull
from loralab.observability.reasons import REASONS, failure_reason, known_reason
from loralab.training.errors import DiskFull, OutOfMemory, TrainingFailed


def _raised_from(err: BaseException, cause: BaseException) -> BaseException:
    err.__cause__ = cause
    return err


class OutOfMemoryError(RuntimeError):
    """Named like torch.OutOfMemoryError (matched by class name: torch is not imported)."""


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (InvalidInput("text_column: no such column"), "data"),
        (NotFound("no dataset 'reviews@v9'"), "data"),
        (OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
        (MemoryError(), "oom"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: out of memory"), "oom"),
        (TrainingFailed("loss became nan at step 3: training diverged."), "nan"),
        (TrainingFailed("a step crashed"), "error"),
        (Conflict("busy"), "error"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk_full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk_full"),
        (DiskFull("disk full at step 8"), "disk_full"),
        (StorageFull("the dataset store is full"), "disk_full"),
        (_raised_from(RuntimeError("saving failed"), OSError(errno.ENOSPC, "full")), "disk_full"),
        (OSError(errno.EACCES, "Permission denied"), "error"),
        (OutOfMemory("out of memory at batch size 1 on cpu"), "oom"),
        (ValueError("something else"), "error"),
    ],
)
def test_failure_reason(err: BaseException, reason: str) -> None:
    assert failure_reason(err) == reason


def test_dataset_invalid_is_data() -> None:
    err = DatasetInvalid.__new__(DatasetInvalid)
    assert failure_reason(err) == "data"


def test_known_reason_keeps_the_set_and_maps_the_rest_to_error() -> None:
    assert [known_reason(r) for r in REASONS] == list(REASONS)
    assert known_reason(None) == "error"
    assert known_reason("user alice's path /srv/x") == "error"
