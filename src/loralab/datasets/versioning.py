"""Dataset versions: fingerprints, a content-addressed store of immutable copies, and records.

Layout of the store::

    <store>/objects/<fp[:2]>/<fp>.jsonl   canonical copy: {"text", "label"} per row, read-only
    <store>/records/<name>.json          every version of a name, oldest first
    <store>/.lock                        held (flock) while a registration writes
    <store>/.upload-*                    an upload or copy being written (flock held)

The fingerprint is the SHA-256 of the *normalised* content: the rows in file order, text and
label stripped, whatever the file format, encoding details (BOM, CRLF) or quoting. The same
content is therefore stored once, whichever file or name it came from. Versions of a name are
numbered ``v1, v2, ...``; registering content that a name already holds returns that version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loralab.errors import InvalidInput, NotFound, StorageFull
from loralab.training.errors import is_disk_full
from loralab.training.files import atomic_write_json, file_lock

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION_PATTERN = re.compile(r"^(latest|v[0-9]{1,9}|[0-9a-f]{6,64})$")
PLAIN_NUMBER = re.compile(r"^[0-9]{1,5}$")  # shorter than any fingerprint prefix (6+)
CANONICAL_TEXT, CANONICAL_LABEL = "text", "label"


def check_name(name: str) -> str:
    """A dataset name: lower-case letters, digits, '.', '_', '-'; no paths."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"dataset name {name!r}: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a "
            "letter or digit"
        )
    return name


@contextlib.contextmanager
def disk_full_refused(what: str) -> Iterator[None]:
    """Turn a full disk (or quota) while ``what`` is written into :class:`StorageFull`; the
    writer inside removes what it half-wrote before the error leaves it."""
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise StorageFull(
            f"{what}: the server's dataset storage is full (no space left on the device); "
            "nothing was stored. Try again once an operator has freed space."
        ) from None


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str  # latest | vN | fingerprint prefix

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


def parse_ref(text: str) -> DatasetRef:
    """``NAME@VERSION``: VERSION is ``latest``, ``v3``, ``3`` or a fingerprint prefix.

    A plain number of one to five digits is a version (``reviews@3`` is ``reviews@v3``, as model
    versions are typed); six or more hex digits, digits only included, are a fingerprint prefix
    (a fingerprint prefix is never shorter, so the two never overlap; ``v123456`` names such a
    version).
    """
    name, sep, version = text.partition("@")
    if not sep:
        raise InvalidInput(f"{text!r}: expected NAME@VERSION (e.g. reviews@v2 or reviews@latest)")
    check_name(name)
    if PLAIN_NUMBER.fullmatch(version):
        version = f"v{int(version)}"
    if not VERSION_PATTERN.fullmatch(version):
        raise InvalidInput(
            f"{text!r}: version {version!r} is not 'latest', 'vN', 'N' or a fingerprint prefix"
        )
    return DatasetRef(name, version)


def looks_like_ref(text: str) -> bool:
    """True for ``NAME@VERSION`` strings (a file path never contains '@' here)."""
    try:
        parse_ref(text)
    except InvalidInput:
        return False
    return True


@dataclass(frozen=True)
class DatasetVersion:
    """One registered version of a dataset."""

    name: str
    version: str
    fingerprint: str
    rows: int
    label_counts: dict[str, int]
    registered_by: str
    registered_at: float
    source: str
    text_column: str
    label_column: str
    path: str  # the stored canonical copy, relative to the store
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Fingerprinter:
    """SHA-256 over canonical rows; also writes the canonical JSONL copy as it goes."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.rows = 0
        self.labels: dict[str, int] = defaultdict(int)

    def line(self, text: str, label: str) -> bytes:
        data = json.dumps(
            {CANONICAL_TEXT: text.strip(), CANONICAL_LABEL: label.strip()}, ensure_ascii=False
        )
        encoded = (data + "\n").encode("utf-8")
        self.digest.update(encoded)
        self.rows += 1
        self.labels[label.strip()] += 1
        return encoded

    @property
    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def fingerprint_rows(rows: Iterable[tuple[str, str]]) -> str:
    """Fingerprint of (text, label) rows in order."""
    fp = Fingerprinter()
    for text, label in rows:
        fp.line(text, label)
    return fp.hexdigest


class DatasetStore:
    """Immutable, content-addressed copies plus JSON records, safe under concurrent writers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def records(self) -> Path:
        return self.root / "records"

    def object_path(self, fingerprint: str) -> Path:
        return self.objects / fingerprint[:2] / f"{fingerprint}.jsonl"

    def record_path(self, name: str) -> Path:
        return self.records / f"{check_name(name)}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock over the store (processes and threads alike)."""
        with file_lock(self.root / ".lock"):
            yield

    def read_versions(self, name: str) -> list[DatasetVersion]:
        path = self.record_path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [DatasetVersion(**item) for item in data.get("versions", [])]

    def names(self) -> list[str]:
        if not self.records.is_dir():
            return []
        return sorted(p.stem for p in self.records.glob("*.json"))

    def add_version(
        self,
        name: str,
        rows: Iterable[tuple[str, str]],
        *,
        user: str,
        source: str,
        text_column: str,
        label_column: str,
        report: dict[str, Any],
    ) -> tuple[DatasetVersion, bool]:
        """Store the rows (once per content) and record a version; (version, created).

        All or nothing: on any failure (a full disk: :class:`StorageFull`) the temporary copy
        is removed, and an object this call stored is removed again if its record could not be
        written.
        """
        check_name(name)
        with disk_full_refused(f"dataset {name!r}"):
            self.root.mkdir(parents=True, exist_ok=True)
            return self._add_version(
                name,
                rows,
                user=user,
                source=source,
                text_column=text_column,
                label_column=label_column,
                report=report,
            )

    def _add_version(
        self,
        name: str,
        rows: Iterable[tuple[str, str]],
        *,
        user: str,
        source: str,
        text_column: str,
        label_column: str,
        report: dict[str, Any],
    ) -> tuple[DatasetVersion, bool]:
        fp = Fingerprinter()
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below
            "wb", dir=self.root, prefix=".upload-", suffix=".tmp", delete=False
        )
        temp = Path(handle.name)
        held = _hold(temp)  # until the copy is stored or removed: a sweep leaves it alone
        try:
            with handle:
                for text, label in rows:
                    handle.write(fp.line(text, label))
            with self.locked():
                existing = self.read_versions(name)
                for version in existing:
                    if version.fingerprint == fp.hexdigest:
                        return version, False
                target = self.object_path(fp.hexdigest)
                stored = not target.exists()
                if stored:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.chmod(temp, 0o444)
                    os.replace(temp, target)
                version = DatasetVersion(
                    name=name,
                    version=f"v{len(existing) + 1}",
                    fingerprint=fp.hexdigest,
                    rows=fp.rows,
                    label_counts=dict(sorted(fp.labels.items())),
                    registered_by=user,
                    registered_at=time.time(),
                    source=source,
                    text_column=text_column,
                    label_column=label_column,
                    path=str(target.relative_to(self.root)),
                    report=report,
                )
                try:
                    self._write_record(name, [*existing, version])
                except BaseException:
                    if stored:  # no record names it: an object nobody can reach
                        target.unlink(missing_ok=True)
                    raise
                return version, True
        finally:
            temp.unlink(missing_ok=True)
            os.close(held)

    def _write_record(self, name: str, versions: list[DatasetVersion]) -> None:
        path = self.record_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"name": name, "versions": [v.to_dict() for v in versions]}
        atomic_write_json(path, data, indent=1)

    def resolve(self, ref: DatasetRef | str) -> DatasetVersion:
        """The version a ref names; NotFound when there is none."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        versions = self.read_versions(ref.name)
        if not versions:
            raise NotFound(f"no dataset named {ref.name!r} (register one: loralab data register)")
        if ref.version == "latest":
            return versions[-1]
        matches = [
            v for v in versions if v.version == ref.version or v.fingerprint.startswith(ref.version)
        ]
        if len(matches) != 1:
            known = ", ".join(v.version for v in versions)
            why = "is ambiguous" if matches else "not found"
            raise NotFound(f"dataset {ref}: version {why} (versions: {known})")
        return matches[0]

    def file_of(self, version: DatasetVersion) -> Path:
        return self.root / version.path


def read_canonical(path: Path) -> Iterator[tuple[str, str]]:
    """(text, label) rows of a stored canonical copy."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            yield item[CANONICAL_TEXT], item[CANONICAL_LABEL]


@dataclass
class RowChange:
    kind: str  # added | removed | relabelled
    text: str
    row_old: int | None
    row_new: int | None
    label_old: str | None
    label_new: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DatasetDiff:
    old: str
    new: str
    added: int
    removed: int
    relabelled: int
    unchanged: int
    changes: list[RowChange]

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "changes"},
            "changes": [c.to_dict() for c in self.changes],
        }


def diff_rows(
    old: Iterable[tuple[str, str]], new: Iterable[tuple[str, str]], old_name: str, new_name: str
) -> DatasetDiff:
    """Rows added, removed and relabelled between two versions (matched by text)."""
    before: dict[str, list[tuple[int, str]]] = defaultdict(list)
    after: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row, (text, label) in enumerate(old, start=1):
        before[text].append((row, label))
    for row, (text, label) in enumerate(new, start=1):
        after[text].append((row, label))
    changes: list[RowChange] = []
    unchanged = 0
    for text in before.keys() | after.keys():
        olds, news = list(before.get(text, [])), list(after.get(text, []))
        # Pair rows with equal labels first; what is left is relabelled, added or removed.
        for row_old, label in list(olds):
            match = next((n for n in news if n[1] == label), None)
            if match is not None:
                olds.remove((row_old, label))
                news.remove(match)
                unchanged += 1
        while olds and news:
            (ro, lo), (rn, ln) = olds.pop(0), news.pop(0)
            changes.append(RowChange("relabelled", text, ro, rn, lo, ln))
        changes.extend(RowChange("removed", text, ro, None, lo, None) for ro, lo in olds)
        changes.extend(RowChange("added", text, None, rn, None, ln) for rn, ln in news)
    changes.sort(key=lambda c: (c.row_new or 0, c.row_old or 0))
    count = {k: sum(1 for c in changes if c.kind == k) for k in ("added", "removed", "relabelled")}
    return DatasetDiff(
        old_name,
        new_name,
        count["added"],
        count["removed"],
        count["relabelled"],
        unchanged,
        changes,
    )


TEMP_PREFIX = ".upload-"
IN_USE = ".in-use"  # the lock file of a temporary folder
YOUNG_SECONDS = 600.0  # a temporary without a lock this young may be one being made now


def _hold(path: Path) -> int:
    """Open ``path`` and hold an exclusive flock on it until the returned fd is closed (the
    kernel drops it when the process dies, even by SIGKILL)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextlib.contextmanager
def holding(folder: Path) -> Iterator[None]:
    """Mark a temporary folder in use while the block runs (see :func:`sweep_temporaries`)."""
    fd = _hold(folder / IN_USE)
    try:
        yield
    finally:
        os.close(fd)


def _in_use(entry: Path) -> bool:
    lock = entry / IN_USE if entry.is_dir() else entry
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return time.time() - entry.stat().st_mtime < YOUNG_SECONDS
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def sweep_temporaries(root: Path) -> list[Path]:
    """Delete the upload leftovers in the store ``root`` whose writer is gone (a crash, a
    kill): ``.upload-*`` files and folders nobody holds a lock on. Returns what was deleted."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in root.glob(TEMP_PREFIX + "*"):
        try:
            if _in_use(entry):
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # its writer finished meanwhile
        removed.append(entry)
    return removed
