"""A full disk while an upload is spooled: a clear answer that says the storage is full, and
no temporary folder, object or version left behind."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import pytest
from tests.api.conftest import Platform, sign_in
from tests.conftest import make_rows


class FullFile(io.BufferedWriter):
    """A file on a disk that fills after the first write."""

    def write(self, data: Any) -> int:
        if self.tell() > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_disk_full_while_spooling_an_upload(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, found, _ = platform
    real_open = Path.open

    def open_on_a_full_disk(self: Path, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if self.name.startswith("upload.") and "w" in mode:
            return FullFile(io.FileIO(self, "wb"))
        return real_open(self, mode, *args, **kw)

    monkeypatch.setattr("loralab.datasets.uploads.CHUNK", 64)  # several writes per upload
    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    body = "text,label\n" + "".join(f"{t},{label}\n" for t, label in make_rows(40))

    response = client.post(
        "/datasets",
        headers=sign_in(client, "alice"),
        data={"name": "crowded"},
        files={"file": ("crowded.csv", body.encode(), "text/csv")},
    )

    assert response.status_code == 507, response.text
    assert "storage is full" in response.json()["detail"]
    store = found.settings.dataset_store_dir
    assert list(store.glob(".upload-*")) == []
    assert not (store / "records" / "crowded.json").exists()
