"""The audit chain's head, sealed outside the database.

The hash chain shows that records were edited, removed or reordered *inside* the chain, but
someone who can write the table can also delete its newest records, or rewrite a record and
recompute every hash after it, and the chain still checks. So at every append the newest
record's id and hash are sealed with an HMAC (a key from settings that is not the JWT secret)
and written to a file outside the table. ``verify`` then also asks: is the sealed record still
there, with the same hash? A missing record is truncation, a different hash is a rewrite, a
bad seal is a forged or edited anchor file.

The sealed head only moves forward (a lower id is never written over a higher one), so a
truncated table does not quietly re-anchor itself on the next append.

Seals of one process are group-committed: while one thread writes (fsync and rename under the
file lock), the others leave the newest head they bring, and the next writer seals the newest
of them all at once. Every ``seal`` still returns only once the file holds its head or a newer
one, and every head sealed is a committed record; the file is written once per batch instead of
once per append, which under load was a queue of fsyncs behind one lock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loralab.settings import Settings
from loralab.training.files import atomic_write_json, file_lock


@dataclass(frozen=True)
class Head:
    """The newest record of the chain: its id and hash."""

    id: int
    hash: str


def _mac(key: bytes, head: Head) -> str:
    return hmac.new(key, f"{head.id}:{head.hash}".encode(), hashlib.sha256).hexdigest()


class AuditAnchor:
    """Seal and check the head of the audit chain in a file (JSON: id, hash, mac)."""

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the audit anchor key must have at least 16 bytes")
        self.path = path
        self._key = key
        self._state = threading.Lock()  # guards _newest and _sealed
        self._writer = threading.Lock()  # one writer of this process at a time
        self._newest: Head | None = None  # the newest head brought to seal by this process
        self._sealed = 0  # the file holds this id or a newer one (written by this process)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditAnchor:
        """The anchor of these settings; ValueError when its key is the JWT secret."""
        home = settings.storage.results_dir
        path = settings.audit.anchor_file or home / "audit-anchor.json"
        configured = settings.audit.anchor_key
        if configured is None:
            key = _key_file(home / "audit-anchor.key")
        else:
            key = configured.get_secret_value().encode()
            if key == settings.auth.secret_key.get_secret_value().encode():
                raise ValueError("LORALAB_AUDIT__ANCHOR_KEY must not be the JWT secret")
        return cls(path, key)

    def read(self) -> Head | None:
        """The sealed head; None when nothing was sealed yet; ValueError when the file was
        edited or forged (its seal does not match)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            head = Head(int(data["id"]), str(data["hash"]))
            mac = str(data["mac"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"the audit anchor {self.path.name} is unreadable: {err}") from None
        if not hmac.compare_digest(mac, _mac(self._key, head)):
            raise ValueError(f"the audit anchor {self.path.name} has a bad seal (edited or forged)")
        return head

    def seal(self, head: Head) -> None:
        """Seal ``head`` (a committed record) unless a newer one is sealed: returns once the
        file holds ``head`` or a newer head (never moves back). Threads that arrive while
        another writes are sealed together by the next write."""
        with self._state:
            if head.id <= self._sealed:
                return
            if self._newest is None or head.id > self._newest.id:
                self._newest = head
        with self._writer:
            with self._state:
                if head.id <= self._sealed:  # sealed by the write this thread waited for
                    return
                newest = self._newest or head
            self._write(newest)
            with self._state:
                self._sealed = max(self._sealed, newest.id)

    def _write(self, head: Head) -> None:
        """Write ``head`` if it is newer than the head in the file (never moves back)."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            try:
                current = self.read()
            except ValueError:
                current = None  # a damaged anchor is reported by verify, not kept forever
            if current is not None and current.id >= head.id:
                return
            record = {"id": head.id, "hash": head.hash, "mac": _mac(self._key, head)}
            atomic_write_json(self.path, record)

    def problem(
        self, hash_of: Callable[[int], str | None], newest: int | None
    ) -> tuple[int, str] | None:
        """The first bad record id and what is wrong, checking the table against the sealed
        head; None when it matches.

        ``hash_of(id)`` is the stored hash of a record (None when missing); ``newest`` the
        highest id in the table (None: empty).
        """
        end = newest or 0
        try:
            head = self.read()
        except ValueError as err:
            return end, str(err)
        if head is None:
            return None if newest is None else (end, "not anchored: the anchor file is missing")
        stored = hash_of(head.id)
        if stored is None:
            return end + 1, (
                f"truncated: record {head.id} was sealed as the newest, but the table ends at {end}"
            )
        if not hmac.compare_digest(stored, head.hash):
            return head.id, f"rewritten: record {head.id} no longer has the hash that was sealed"
        return None


def _key_file(path: Path) -> bytes:
    """A random key kept in ``path`` (created once, owner-only)."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    try:
        os.link(scratch, path)  # atomic: the key file appears whole or not at all
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    finally:
        scratch.unlink()
    return key
