"""A full disk while a dataset version is stored: StorageFull (the API's 507), and nothing
half-written is left: no temporary copy, no object without a record, no changed record."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loralab.datasets import versioning
from loralab.datasets.versioning import DatasetStore
from loralab.errors import StorageFull

ROWS = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(10)]
OTHER = [(f"other text {i}", "pos" if i % 2 else "neg") for i in range(10)]


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def add(store: DatasetStore, rows: Any, name: str = "demo") -> tuple[Any, bool]:
    return store.add_version(
        name, rows, user="alice", source="x.csv", text_column="text", label_column="label",
        report={},
    )  # fmt: skip


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def rows_then_full(rows: list[tuple[str, str]], after: int) -> Iterator[tuple[str, str]]:
    """Rows whose writing runs out of space after ``after`` of them."""
    for i, row in enumerate(rows):
        if i == after:
            raise OSError(errno.ENOSPC, "No space left on device")
        yield row


def test_full_while_copying_leaves_no_temporary_and_no_version(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store")
    add(store, ROWS)
    before = files(store.root)

    with pytest.raises(StorageFull, match="dataset 'demo': the server's dataset storage is full"):
        add(store, rows_then_full(OTHER, after=4))

    assert files(store.root) == before
    assert [v.version for v in store.read_versions("demo")] == ["v1"]


def test_full_while_writing_the_record_removes_the_object_it_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetStore(tmp_path / "store")
    add(store, ROWS)
    before = files(store.root)
    monkeypatch.setattr(versioning, "atomic_write_json", no_space)

    with pytest.raises(StorageFull, match="nothing was stored"):
        add(store, OTHER)

    assert files(store.root) == before  # no object that no record names, no temporary file
    assert [v.version for v in store.read_versions("demo")] == ["v1"]


def test_full_while_writing_a_record_keeps_an_object_another_name_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetStore(tmp_path / "store")
    first, _ = add(store, ROWS, name="first")
    monkeypatch.setattr(versioning, "atomic_write_json", no_space)

    with pytest.raises(StorageFull):
        add(store, ROWS, name="second")

    assert store.file_of(first).is_file()
    assert store.read_versions("second") == []


def test_other_write_errors_are_not_called_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    store = DatasetStore(tmp_path / "store")
    monkeypatch.setattr(versioning, "atomic_write_json", denied)
    with pytest.raises(PermissionError):
        add(store, ROWS)
    assert files(store.root) == [".lock"]  # the object it stored is removed again
