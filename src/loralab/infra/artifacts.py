"""Run files shared between machines through the MLflow artifact store.

Embedded mode (one machine, SQLite, a local results home) needs none of this. With a tracking
server (``mlflow.tracking_uri`` is http(s)), its artifact store (S3-compatible, or
``mlflow-artifacts:`` proxied by the server) is what every machine sees, so:

* a registered version's run-shaped folder (``model/artifacts/run`` of its MLflow run) carries a
  manifest (relative path -> sha256 and size, :func:`write_manifest`), and
  :class:`VersionCache` fetches it on first use into ``<cache>/models/<name>@<version>/``:
  downloaded into a temporary folder, checked against the manifest, renamed into place (a
  reader sees the whole entry or none), kept under a size bound by evicting the least recently
  used entries;
* :class:`CheckpointMirror` keeps a copy of each complete checkpoint (and the run's
  ``config.yaml`` and ``run.json``) under the run's ``checkpoints/`` artifacts, deleting what
  retention deletes locally, so a job whose worker died resumes on another machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.errors import LoralabError, NotFound
from loralab.settings import Settings
from loralab.training.files import atomic_write_json, file_lock

log = logging.getLogger("loralab.artifacts")

MANIFEST = "loralab-manifest.json"
ENTRY_INFO = "loralab-cache.json"  # in each cache entry: where it came from; its mtime = last use
MODELS = "models"
TEMP_PREFIX = ".fetch-"
CHECKPOINTS = "checkpoints"  # the run's artifact folder of mirrored checkpoints
_CHUNK = 1 << 20


class ArtifactCorrupt(LoralabError):
    """Files fetched from the artifact store do not match their manifest (nothing was kept)."""


class ArtifactUnavailable(LoralabError):
    """The artifact store cannot be reached or read."""


def shared_artifacts_on(settings: Settings) -> bool:
    """``mlflow.shared_artifacts``: on, off, or (auto) on with an http(s) tracking server."""
    mode = settings.mlflow.shared_artifacts
    if mode != "auto":
        return mode == "on"
    uri = settings.mlflow.tracking_uri or ""
    return uri.startswith(("http://", "https://"))


def cache_dir(settings: Settings) -> Path:
    """``storage.cache_dir``, or ``<results home>/.cache``."""
    return settings.storage.cache_dir or settings.storage.results_dir / ".cache"


# --- manifests -------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(folder: Path, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every file under ``folder`` but those named in ``skip``: relative path -> sha256, size."""
    skipped = {MANIFEST, ENTRY_INFO, *skip}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in skipped)
    return {
        "files": {
            p.relative_to(folder).as_posix(): {"sha256": sha256_of(p), "size": p.stat().st_size}
            for p in files
        }
    }


def write_manifest(folder: Path) -> Path:
    """Record every file under ``folder`` in its manifest, so a machine that fetches the folder
    can check what it got."""
    path = folder / MANIFEST
    atomic_write_json(path, manifest_of(folder), indent=1, sort_keys=True)
    return path


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest's files; ArtifactCorrupt when there is none or it cannot be read."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ArtifactCorrupt(f"{folder.name}: no readable {MANIFEST}") from None
    if not isinstance(files, dict) or not files:
        raise ArtifactCorrupt(f"{folder.name}: {MANIFEST} lists no files")
    return files


def check_manifest(folder: Path, *, hashes: bool = True) -> int:
    """Every file of the manifest is there with its size (and, with ``hashes``, its sha256);
    returns the total size. A mismatch raises ArtifactCorrupt naming the file."""
    total = 0
    for name, expected in read_manifest(folder).items():
        path = folder / name
        if not path.is_file():
            raise ArtifactCorrupt(f"{folder.name}: {name} is missing")
        size = path.stat().st_size
        if size != expected.get("size"):
            raise ArtifactCorrupt(
                f"{folder.name}: {name} has {size} bytes, its manifest says {expected.get('size')}"
            )
        if hashes and sha256_of(path) != expected.get("sha256"):
            raise ArtifactCorrupt(f"{folder.name}: {name} does not match its sha256")
        total += size
    return total


# --- the version cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    folder: Path
    size: int
    used: float  # last use (the info file's mtime)


class VersionCache:
    """Model versions fetched from the artifact store into ``root/models/<name>@<version>/``.

    One lock file serialises fetches and evictions of every process on the machine, so a
    version is downloaded once however many processes ask for it together.
    """

    def __init__(self, root: Path, max_bytes: int, uri: str) -> None:
        self.root = root
        self.models = root / MODELS
        self.max_bytes = max_bytes
        self.uri = uri
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> VersionCache:
        from loralab.infra.tracking import tracking_uri

        return cls(
            cache_dir(settings), settings.storage.cache_max_mb * 1_000_000, tracking_uri(settings)
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def entry(self, name: str, version: str) -> Path:
        return self.models / f"{name}@{version}"

    def fetch(self, name: str, version: str, run_id: str, artifact_path: str) -> Path:
        """The local folder of ``name@version`` (the artifact ``artifact_path`` of MLflow run
        ``run_id``), downloaded and checked first when missing, incomplete or from another run.
        """
        folder = self.entry(name, version)
        if self._usable(folder, run_id):
            _mark_used(folder)
            return folder
        with file_lock(self.models / ".lock"):
            if self._usable(folder, run_id):  # another process fetched it meanwhile
                _mark_used(folder)
                return folder
            self._download(folder, run_id, artifact_path)
            self._evict(keep=folder)
        return folder

    def _usable(self, folder: Path, run_id: str) -> bool:
        """A complete entry of this run: its info names the run and every file has its size
        (the sha256 was checked when it was fetched)."""
        try:
            info = json.loads((folder / ENTRY_INFO).read_text(encoding="utf-8"))
            if info.get("run_id") != run_id:
                return False
            check_manifest(folder, hashes=False)
        except (OSError, ValueError, ArtifactCorrupt):
            return False
        return True

    def _download(self, folder: Path, run_id: str, artifact_path: str) -> None:
        """Download into a temporary folder beside the entry, check it, rename it into place."""
        self.models.mkdir(parents=True, exist_ok=True)
        self._clear_temporaries()
        temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.models))
        try:
            local = self._download_to(temp, run_id, artifact_path, folder.name)
            size = check_manifest(local)
            info = {"run_id": run_id, "artifact_path": artifact_path, "size": size}
            atomic_write_json(local / ENTRY_INFO, {**info, "fetched_at": time.time()})
            if folder.exists():  # broken or from another run: out of the way first
                old = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.models)) / "old"
                os.replace(folder, old)
            os.replace(local, folder)
            log.info("fetched %s (%d bytes) from MLflow run %s", folder.name, size, run_id)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
            self._clear_temporaries()

    def _download_to(self, temp: Path, run_id: str, artifact_path: str, what: str) -> Path:
        """MLflow's download, its failures said as domain errors."""
        from mlflow.exceptions import MlflowException

        try:
            return Path(self.client.download_artifacts(run_id, artifact_path, str(temp)))
        except MlflowException as err:
            if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                raise NotFound(
                    f"{what}: {artifact_path} of MLflow run {run_id} is not in the artifact store"
                ) from None
            raise ArtifactUnavailable(f"{what}: cannot fetch its files: {err.message}") from None
        except Exception as err:  # noqa: BLE001 - S3, HTTP and disk errors mean the same here
            raise ArtifactUnavailable(
                f"{what}: cannot fetch its files: {type(err).__name__}: {str(err)[:300]}"
            ) from None

    def _clear_temporaries(self) -> None:
        """Folders of fetches that died half-way (only ever touched under the lock)."""
        for path in self.models.glob(f"{TEMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)

    def entries(self) -> list[CacheEntry]:
        """The complete entries, least recently used first."""
        found = []
        for folder in self.models.glob("*@*") if self.models.is_dir() else []:
            info = folder / ENTRY_INFO
            try:
                size = int(json.loads(info.read_text(encoding="utf-8"))["size"])
                used = info.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.append(CacheEntry(folder, size, used))
        return sorted(found, key=lambda e: (e.used, e.folder.name))

    def _evict(self, keep: Path) -> list[Path]:
        """Delete least recently used entries while the cache is over its bound (never
        ``keep``, the entry just fetched)."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        evicted = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.folder == keep:
                continue
            doomed = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.models)) / "evicted"
            os.replace(entry.folder, doomed)
            shutil.rmtree(doomed.parent, ignore_errors=True)
            total -= entry.size
            evicted.append(entry.folder)
            log.info("evicted %s from the model cache (%d bytes)", entry.folder.name, entry.size)
        return evicted


def _mark_used(folder: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(folder / ENTRY_INFO)


# --- checkpoints -----------------------------------------------------------------------------


class CheckpointMirror:
    """Copies of a run's complete checkpoints in its MLflow artifacts (``checkpoints/``).

    A checkpoint's files and its manifest go up first, its completeness marker (``marker``)
    last, so a copy counts as complete only once whole, as on disk; deleting takes the marker
    first. ``config.yaml`` and ``run.json`` go beside the checkpoints: with them another
    machine rebuilds the run folder.
    """

    def __init__(self, client: Any, marker: str) -> None:
        self.client = client
        self.marker = marker

    def upload(self, run_id: str, checkpoint: Path, run_files: Iterable[Path]) -> None:
        target = f"{CHECKPOINTS}/{checkpoint.name}"
        files = [p for p in sorted(checkpoint.rglob("*")) if p.is_file()]
        for path in [p for p in files if p.name not in {self.marker, MANIFEST}]:
            parent = path.parent.relative_to(checkpoint).as_posix()
            folder = target if parent == "." else f"{target}/{parent}"
            self.client.log_artifact(run_id, str(path), artifact_path=folder)
        with tempfile.TemporaryDirectory(prefix="loralab-manifest-") as tmp:
            manifest = Path(tmp) / MANIFEST
            atomic_write_json(manifest, manifest_of(checkpoint, skip=[self.marker]), indent=1)
            self.client.log_artifact(run_id, str(manifest), artifact_path=target)
        for path in run_files:
            if path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path=CHECKPOINTS)
        self.client.log_artifact(run_id, str(checkpoint / self.marker), artifact_path=target)

    def delete(self, run_id: str, names: Iterable[str]) -> None:
        """Delete ``checkpoints/<name>`` of the run for each name (a missing one is fine)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        base = self.client.get_run(run_id).info.artifact_uri.rstrip("/")
        repository = get_artifact_repository(base, tracking_uri=str(self.client.tracking_uri))
        for name in names:
            repository.delete_artifacts(f"{CHECKPOINTS}/{name}/{self.marker}")  # incomplete now
            repository.delete_artifacts(f"{CHECKPOINTS}/{name}")

    def download(self, run_id: str, dest: Path) -> Path:
        """The run's ``checkpoints/`` folder downloaded into ``dest`` (an existing folder),
        keeping only complete checkpoints, each checked against its manifest."""
        local = Path(self.client.download_artifacts(run_id, CHECKPOINTS, str(dest)))
        for child in sorted(local.iterdir()):
            if not child.is_dir():
                continue
            if (child / self.marker).is_file():
                check_manifest(child)
            else:
                shutil.rmtree(child)
        return local

    def complete(self, run_id: str) -> list[str]:
        """Names of the run's mirrored checkpoints whose marker is there, oldest first."""
        found = []
        for item in self.client.list_artifacts(run_id, CHECKPOINTS):
            if not item.is_dir:
                continue
            names = {Path(f.path).name for f in self.client.list_artifacts(run_id, item.path)}
            if self.marker in names:
                found.append(Path(item.path).name)
        return sorted(found, key=lambda n: int(n.rsplit("-", 1)[-1]))
