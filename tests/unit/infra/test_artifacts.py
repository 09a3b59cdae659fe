"""The version cache and the checkpoint mirror against a real local MLflow store (SQLite
tracking, file artifacts): checked, atomic, size-bounded LRU, refetched after a wipe."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from loralab.errors import NotFound
from loralab.infra.artifacts import (
    ENTRY_INFO,
    MANIFEST,
    ArtifactCorrupt,
    ArtifactUnavailable,
    CheckpointMirror,
    VersionCache,
    check_manifest,
    shared_artifacts_on,
    write_manifest,
)
from loralab.settings import MlflowSettings, Settings
from loralab.training.checkpoints import MARKER, mark_complete

FOLDER = "model/artifacts/run"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking URI: SQLite tracking, artifacts in a folder (one per test module)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("cache", artifact_location=(root / "artifacts").as_uri())
    return uri


def run_folder(folder: Path, payload: bytes = b"weights" * 1000) -> Path:
    """A small run-shaped folder with its manifest."""
    (folder / "artifacts" / "adapter").mkdir(parents=True)
    (folder / "artifacts" / "adapter" / "adapter_model.safetensors").write_bytes(payload)
    (folder / "artifacts" / "model_info.json").write_text('{"labels": ["a", "b"]}')
    write_manifest(folder)
    return folder


def logged_version(uri: str, tmp: Path, payload: bytes = b"weights" * 1000) -> str:
    """A new MLflow run holding a run-shaped folder at FOLDER; its run id."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cache")
    assert experiment is not None
    run_id = str(client.create_run(experiment.experiment_id).info.run_id)
    folder = run_folder(tmp / run_id / "run", payload)
    client.log_artifacts(run_id, str(folder), artifact_path=FOLDER)
    return run_id


class CountingClient:
    """The real client, counting downloads (and failing them on demand)."""

    def __init__(self, uri: str, fail_after_write: bool = False) -> None:
        self.real = MlflowClient(tracking_uri=uri)
        self.downloads = 0
        self.fail_after_write = fail_after_write

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        self.downloads += 1
        local = self.real.download_artifacts(run_id, path, dst_path)
        if self.fail_after_write:
            raise ConnectionError("connection reset mid-download")
        return local


def cache_of(root: Path, uri: str, max_bytes: int = 10**9, **client: Any) -> VersionCache:
    cache = VersionCache(root, max_bytes, uri)
    cache._client = CountingClient(uri, **client)
    return cache


def leftovers(cache: VersionCache) -> list[str]:
    """Everything in the cache's models folder but its lock file."""
    if not cache.models.is_dir():
        return []
    return sorted(p.name for p in cache.models.iterdir() if p.name != ".lock")


def test_fetch_downloads_checks_and_reuses(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    cache = cache_of(tmp_path / "cache", store)
    folder = cache.fetch("sent", "1", run_id, FOLDER)
    assert folder == tmp_path / "cache" / "models" / "sent@1"
    assert (folder / "artifacts" / "adapter" / "adapter_model.safetensors").is_file()
    assert check_manifest(folder) > 7000
    assert json.loads((folder / ENTRY_INFO).read_text())["run_id"] == run_id
    assert cache.fetch("sent", "1", run_id, FOLDER) == folder
    assert cache._client.downloads == 1
    assert leftovers(cache) == ["sent@1"]


def test_checksum_mismatch_is_refused_and_nothing_is_kept(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cache")
    assert experiment is not None
    run_id = str(client.create_run(experiment.experiment_id).info.run_id)
    folder = run_folder(tmp_path / "bad")
    (folder / "artifacts" / "model_info.json").write_text('{"labels": ["x", "y"]}')  # same size
    client.log_artifacts(run_id, str(folder), artifact_path=FOLDER)
    cache = cache_of(tmp_path / "cache", store)
    with pytest.raises(ArtifactCorrupt, match="artifacts/model_info.json"):
        cache.fetch("bad", "1", run_id, FOLDER)
    assert leftovers(cache) == []


def test_a_folder_without_manifest_is_refused(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cache")
    assert experiment is not None
    run_id = str(client.create_run(experiment.experiment_id).info.run_id)
    folder = run_folder(tmp_path / "old")
    (folder / MANIFEST).unlink()
    client.log_artifacts(run_id, str(folder), artifact_path=FOLDER)
    cache = cache_of(tmp_path / "cache", store)
    with pytest.raises(ArtifactCorrupt, match=MANIFEST):
        cache.fetch("old", "1", run_id, FOLDER)
    assert leftovers(cache) == []


def test_a_failed_download_leaves_no_half_entry(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    cache = cache_of(tmp_path / "cache", store, fail_after_write=True)
    with pytest.raises(ArtifactUnavailable, match="connection reset"):
        cache.fetch("sent", "1", run_id, FOLDER)
    assert leftovers(cache) == []
    cache._client.fail_after_write = False
    assert check_manifest(cache.fetch("sent", "1", run_id, FOLDER))


def test_a_missing_artifact_is_not_found(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    cache = cache_of(tmp_path / "cache", store)
    with pytest.raises(NotFound, match="not in the artifact store"):
        cache.fetch("sent", "1", run_id, "model/artifacts/nothing")
    assert leftovers(cache) == []


def test_a_corrupt_or_foreign_entry_is_refetched(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    cache = cache_of(tmp_path / "cache", store)
    folder = cache.fetch("sent", "1", run_id, FOLDER)
    weights = folder / "artifacts" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"trunc")
    assert cache.fetch("sent", "1", run_id, FOLDER) == folder
    assert weights.stat().st_size == 7000 and cache._client.downloads == 2
    # the same name@version now comes from another MLflow run (a re-created model)
    other = logged_version(store, tmp_path, payload=b"other" * 100)
    assert cache.fetch("sent", "1", other, FOLDER) == folder
    assert weights.read_bytes() == b"other" * 100 and cache._client.downloads == 3
    assert leftovers(cache) == ["sent@1"]


def test_wiping_the_cache_refetches_the_same_files(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    cache = cache_of(tmp_path / "cache", store)
    first = json.loads((cache.fetch("sent", "2", run_id, FOLDER) / MANIFEST).read_text())
    shutil.rmtree(tmp_path / "cache")
    again = cache.fetch("sent", "2", run_id, FOLDER)
    assert json.loads((again / MANIFEST).read_text()) == first
    assert check_manifest(again) and cache._client.downloads == 2


def test_least_recently_used_entries_are_evicted_past_the_bound(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    size = check_manifest(run_folder(tmp_path / "size"))
    cache = cache_of(tmp_path / "cache", store, max_bytes=int(size * 2.5))
    for version, used in (("1", 100), ("2", 200)):
        folder = cache.fetch("sent", version, run_id, FOLDER)
        os.utime(folder / ENTRY_INFO, (used, used))
    cache.fetch("sent", "1", run_id, FOLDER)  # a use: version 1 is now the most recent
    cache.fetch("sent", "3", run_id, FOLDER)  # over the bound: the least recent (2) goes
    assert leftovers(cache) == ["sent@1", "sent@3"]
    assert sum(e.size for e in cache.entries()) <= cache.max_bytes


def test_the_entry_just_fetched_is_never_evicted(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    cache = cache_of(tmp_path / "cache", store, max_bytes=10)  # smaller than any entry
    cache.fetch("sent", "1", run_id, FOLDER)
    assert check_manifest(cache.fetch("sent", "2", run_id, FOLDER))
    assert leftovers(cache) == ["sent@2"]


def test_concurrent_fetches_download_once(store: str, tmp_path: Path) -> None:
    run_id = logged_version(store, tmp_path)
    caches = [cache_of(tmp_path / "cache", store) for _ in range(4)]
    barrier = threading.Barrier(len(caches))
    found: list[Path] = []

    def fetch(cache: VersionCache) -> None:
        barrier.wait()
        found.append(cache.fetch("sent", "1", run_id, FOLDER))

    threads = [threading.Thread(target=fetch, args=(c,)) for c in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(found) == 4 and len(set(found)) == 1
    assert sum(c._client.downloads for c in caches) == 1


@pytest.mark.parametrize(
    ("mode", "uri", "on"),
    [
        ("auto", None, False),
        ("auto", "sqlite:///x.db", False),
        ("auto", "http://mlflow:5000", True),
        ("auto", "https://mlflow.example", True),
        ("on", None, True),
        ("off", "http://mlflow:5000", False),
    ],
)
def test_shared_artifacts_setting(mode: str, uri: str | None, on: bool) -> None:
    settings = Settings(mlflow=MlflowSettings(tracking_uri=uri, shared_artifacts=mode))  # type: ignore[arg-type]
    assert shared_artifacts_on(settings) is on


def checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    (path / "sub").mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(os.urandom(2000))
    (path / "sub" / "optimizer.pt").write_bytes(os.urandom(500))
    mark_complete(path, step, 0.5)
    return path


def test_checkpoint_copies_upload_list_download_and_delete(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cache")
    assert experiment is not None
    run_id = str(client.create_run(experiment.experiment_id).info.run_id)
    mirror = CheckpointMirror(client, MARKER)
    config = tmp_path / "config.yaml"
    config.write_text("experiment: x\n")
    for step in (4, 8, 40):
        mirror.upload(run_id, checkpoint(tmp_path / "ckpt", step), [config])
    assert mirror.complete(run_id) == ["checkpoint-4", "checkpoint-8", "checkpoint-40"]

    mirror.delete(run_id, ["checkpoint-4"])  # not checkpoint-40, whose name starts alike
    assert mirror.complete(run_id) == ["checkpoint-8", "checkpoint-40"]
    client.log_artifact(  # a copy whose marker never arrived (the machine died mid-upload)
        run_id, str(tmp_path / "ckpt" / "checkpoint-4" / "sub" / "optimizer.pt"),
        artifact_path="checkpoints/checkpoint-12",
    )  # fmt: skip
    assert mirror.complete(run_id) == ["checkpoint-8", "checkpoint-40"]

    (tmp_path / "down").mkdir()
    local = mirror.download(run_id, tmp_path / "down")
    names = sorted(p.name for p in local.iterdir())
    assert names == ["checkpoint-40", "checkpoint-8", "config.yaml"]
    original = tmp_path / "ckpt" / "checkpoint-8" / "sub" / "optimizer.pt"
    assert (local / "checkpoint-8" / "sub" / "optimizer.pt").read_bytes() == original.read_bytes()
    assert check_manifest(local / "checkpoint-8")


def test_a_tampered_checkpoint_copy_is_refused(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("cache")
    assert experiment is not None
    run_id = str(client.create_run(experiment.experiment_id).info.run_id)
    mirror = CheckpointMirror(client, MARKER)
    path = checkpoint(tmp_path / "ckpt", 4)
    mirror.upload(run_id, path, [])
    (path / "sub" / "optimizer.pt").write_bytes(os.urandom(500))  # same size, other bytes
    client.log_artifact(run_id, str(path / "sub" / "optimizer.pt"), "checkpoints/checkpoint-4/sub")
    (tmp_path / "down").mkdir()
    with pytest.raises(ArtifactCorrupt, match="sub/optimizer.pt"):
        mirror.download(run_id, tmp_path / "down")
