"""Files that readers never see half-written, and locks that hold across threads and processes.

The one copy of each for the whole project (checkpoints, the dataset store, the card folder,
database upgrades). Pure standard library plus ``filelock``, so the training library stays
importable on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half of it.

    A temporary file in the same folder is fsynced and renamed over ``path``; on any failure it
    is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any, *, indent: int = 2, sort_keys: bool = False) -> None:
    """``atomic_write_text`` of ``data`` as JSON (UTF-8, non-ASCII kept)."""
    atomic_write_text(
        path, json.dumps(data, ensure_ascii=False, indent=indent, sort_keys=sort_keys)
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) until the block ends.

    Each call takes its own lock object, so the lock excludes other threads of this process as
    well as other processes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path), is_singleton=False, thread_local=False):
        yield
