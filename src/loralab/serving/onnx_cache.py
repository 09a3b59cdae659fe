"""The hot model on ONNX Runtime: exported on first use, cached with its version, verified.

Each served version gets a cache folder ``<root>/<version>-<fingerprint>/`` holding
``model.onnx`` and ``manifest.json``. The fingerprint covers everything the graph depends on:
the adapter's files, the run's model_info (labels, pooling, max length), its tokenizer, the base
model's files (name, size, modification time), the exporter (format, opset, torch, transformers,
peft, onnx versions). The manifest records the fingerprint, the file's size and SHA-256, and
the PyTorch (fp32, merged) probabilities of fixed texts computed when the file was made.

Loading checks, in order: the manifest reads and names this fingerprint, the file has its size
and checksum, ONNX Runtime opens it, and it answers the fixed texts as PyTorch did (same
labels, probabilities within the tolerance). Anything else (a truncated or garbled file, a
hand-edited manifest, another torch) rebuilds the folder; a folder appears whole or not at
all, and a file that fails the check is never served. When the export itself fails, the
caller serves the version through PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from loralab.serving.resolve import ModelHandle
from loralab.training.catalog import ModelSourceError, resolve_model
from loralab.training.files import atomic_write_json, file_lock
from loralab.training.inference import classify, load_predictor
from loralab.training.onnx_export import (
    AGREEMENT_TEXTS,
    ONNX_FILE,
    OnnxClassifier,
    OnnxExportError,
    check_agreement,
    export_onnx,
)

log = logging.getLogger("loralab.serving")

MANIFEST = "manifest.json"
CACHE_FORMAT = 1
OPSET = 17
TOLERANCE = 1e-3  # probability; fp32 ORT vs fp32 PyTorch differ by ~1e-6 on MiniLM


class OnnxUnavailable(Exception):
    """This version cannot run on ONNX Runtime (the export or its check failed): serve it
    through PyTorch, and say why."""


@dataclass(frozen=True)
class CachedOnnx:
    """A verified ONNX model of one version."""

    classifier: OnnxClassifier
    folder: Path
    built: bool  # exported by this call (False: read from the cache)
    max_probability_diff: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _files_digest(folder: Path, names: list[str] | None = None) -> str:
    """SHA-256 over the names and contents of ``folder``'s files (``names`` only, if given)."""
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and (names is None or path.name in names):
                digest.update(path.name.encode() + b"\0" + _sha256(path).encode())
    return digest.hexdigest()


def _base_identity(base_model: str) -> list[Any]:
    """The base model's files by name, size and modification time (hashing ~100 MB of weights
    on every start would cost more than the check is worth)."""
    try:
        source = Path(resolve_model(base_model).source)
    except ModelSourceError:
        return [base_model]
    if not source.is_dir():
        return [base_model, str(source)]
    found: list[Any] = [base_model]
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".txt"}:
            stat = path.stat()
            found.append([path.name, stat.st_size, stat.st_mtime_ns])
    return found


def fingerprint(handle: ModelHandle) -> dict[str, Any]:
    """What the exported graph depends on (see the module docstring)."""
    run = handle.run
    return {
        "format": CACHE_FORMAT,
        "opset": OPSET,
        "adapter": _files_digest(run.adapter, ["adapter_config.json", "adapter_model.safetensors"]),
        "model_info": _sha256(run.model_info),
        "tokenizer": _files_digest(run.tokenizer),
        "base": _base_identity(handle.base_model),
        "pooling": handle.pooling,
        "versions": {p: _version(p) for p in ("torch", "transformers", "peft", "onnx")},
    }


def _digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _folder_name(key: str, digest: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "model"
    return f"{safe[:80]}-{digest[:16]}"


class OnnxCache:
    """Exports, verifies and opens ONNX models of served versions under ``root``."""

    def __init__(
        self, root: Path, *, threads: int | None = None, device: str = "cpu", spin: bool = False
    ) -> None:
        self.root = root
        self.threads = threads
        self.device = device
        self.spin = spin

    def folder(self, handle: ModelHandle) -> Path:
        return self.root / _folder_name(handle.key, _digest(fingerprint(handle)))

    def load(self, handle: ModelHandle) -> CachedOnnx:
        """The verified ONNX model of ``handle``: from the cache, else exported now.

        Raises :class:`OnnxUnavailable` when it cannot be exported or does not agree with
        PyTorch.
        """
        parts = fingerprint(handle)
        digest = _digest(parts)
        folder = self.root / _folder_name(handle.key, digest)
        tokenizer = _tokenizer(handle)
        try:
            with file_lock(self.root / ".locks" / f"{folder.name}.lock"):
                try:
                    return self._open(folder, digest, handle, tokenizer)
                except _Stale as why:
                    if folder.exists():
                        log.warning(
                            "ONNX cache of %s is not usable (%s): rebuilding", handle.key, why
                        )
                    else:
                        log.info("ONNX cache of %s: none yet, exporting", handle.key)
                return self._build(folder, parts, digest, handle, tokenizer)
        except OSError as err:  # an unwritable or full cache folder
            raise OnnxUnavailable(f"ONNX cache {self.root}: {err}") from err

    # -- reading --------------------------------------------------------------------------
    def _open(self, folder: Path, digest: str, handle: ModelHandle, tokenizer: Any) -> CachedOnnx:
        manifest_path, model_path = folder / MANIFEST, folder / ONNX_FILE
        if not folder.is_dir():
            raise _Stale("no folder")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not an object")
            expected = manifest["fingerprint"], int(manifest["size"]), str(manifest["sha256"])
            reference = manifest["reference"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise _Stale(f"manifest unreadable: {err}") from None
        if expected[0] != digest:
            raise _Stale("manifest is for another fingerprint")
        if not model_path.is_file() or model_path.stat().st_size != expected[1]:
            raise _Stale(f"{ONNX_FILE} is missing or has the wrong size")
        if _sha256(model_path) != expected[2]:
            raise _Stale(f"{ONNX_FILE} checksum differs from the manifest")
        try:
            classifier = self._session(model_path, tokenizer)
        except Exception as err:  # noqa: BLE001 - ORT raises its own types for a bad file
            raise _Stale(f"ONNX Runtime cannot open it: {err}") from None
        diff = _compare(classifier, handle, reference)
        if diff is None or diff > TOLERANCE:
            raise _Stale("its answers on the fixed texts differ from PyTorch's")
        return CachedOnnx(classifier, folder, built=False, max_probability_diff=diff)

    def _session(self, path: Path, tokenizer: Any) -> OnnxClassifier:
        return OnnxClassifier(
            path, tokenizer, threads=self.threads, device=self.device, spin=self.spin
        )

    # -- building -------------------------------------------------------------------------
    def _build(
        self,
        folder: Path,
        parts: dict[str, Any],
        digest: str,
        handle: ModelHandle,
        tokenizer: Any,
    ) -> CachedOnnx:
        start = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            try:
                predictor = load_predictor(handle.run, device="cpu", precision="fp32")
                path = export_onnx(predictor.model, predictor.tokenizer, staging, opset=OPSET)
                classifier = self._session(path, tokenizer)
            except (OnnxExportError, ModelSourceError, OSError, RuntimeError, ValueError) as err:
                raise OnnxUnavailable(f"ONNX export of {handle.key} failed: {err}") from err
            labels, max_length = list(handle.labels), handle.max_length
            agreement = check_agreement(
                predictor.model, tokenizer, classifier, labels, max_length, tolerance=TOLERANCE
            )
            if not agreement.ok:
                raise OnnxUnavailable(
                    f"ONNX model of {handle.key} disagrees with PyTorch: {agreement.describe()}"
                )
            reference = [
                classify(predictor.model, tokenizer, labels, [text], "cpu", max_length)[0]
                for text in AGREEMENT_TEXTS
            ]
            manifest = {
                "version": handle.key,
                "fingerprint": digest,
                "parts": parts,
                "size": path.stat().st_size,
                "sha256": _sha256(path),
                "reference": [
                    {"text": text, "label": p.label, "probabilities": p.probabilities}
                    for text, p in zip(AGREEMENT_TEXTS, reference, strict=True)
                ],
                "agreement": agreement.describe(),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write_json(staging / MANIFEST, manifest, sort_keys=True)
            _publish(staging, folder)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(staging)
            raise
        classifier.path = folder / ONNX_FILE  # the session holds the graph; the file moved
        log.info(
            "exported %s to ONNX in %.1f s (%s)",
            handle.key,
            time.perf_counter() - start,
            agreement.describe(),
        )
        return CachedOnnx(classifier, folder, True, agreement.max_probability_diff)


class _Stale(Exception):
    """Why a cache folder cannot be used as it is."""


def _tokenizer(handle: ModelHandle) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(handle.run.tokenizer), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise OnnxUnavailable(f"{handle.key}: cannot load its tokenizer: {err}") from None


def _compare(classifier: OnnxClassifier, handle: ModelHandle, reference: Any) -> float | None:
    """The largest probability difference from the recorded PyTorch answers; None when a label
    differs or the record does not fit these texts and labels."""
    labels = list(handle.labels)
    if not isinstance(reference, list) or len(reference) != len(AGREEMENT_TEXTS):
        return None
    worst = 0.0
    for text, expected in zip(AGREEMENT_TEXTS, reference, strict=True):
        if not isinstance(expected, dict) or expected.get("text") != text:
            return None
        [got] = classifier.classify([text], labels, handle.max_length)
        probabilities = expected.get("probabilities")
        if got.label != expected.get("label") or not isinstance(probabilities, dict):
            return None
        if set(probabilities) != set(labels):
            return None
        for name in labels:
            worst = max(worst, abs(float(probabilities[name]) - got.probabilities[name]))
    return worst


def _publish(staging: Path, folder: Path) -> None:
    """Rename ``staging`` to ``folder``, replacing an old (stale) folder only at the end."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
