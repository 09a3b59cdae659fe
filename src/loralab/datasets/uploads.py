"""Datasets uploaded through the API: stored as registered versions, owned by the uploader.

An uploaded file is streamed to a private temporary file (size-capped, the client's file name
reduced to its extension), validated and registered by the data service, and the temporary file
is removed whatever happens. A version uploaded by a user is visible to that user and to
admins; versions registered from the CLI by an operator (no owner) are shared with everyone.

The same rule decides what a user may train on (:func:`check_visible`): a version they may not
see looks exactly like one that does not exist, and ``NAME@latest`` means the newest version
they may see, so another user's newer upload neither hides theirs nor leaks into their job.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

from loralab.audit.log import AuditLog
from loralab.datasets import service as datasets
from loralab.datasets.versioning import DatasetVersion, parse_ref
from loralab.errors import Conflict, InvalidInput, LoralabError, NotFound, PayloadTooLarge
from loralab.identity import Actor, RequestContext
from loralab.infra.db import Database, DatasetRecord, User
from loralab.settings import Settings
from loralab.training.reader import FORMATS

CHUNK = 1 << 20


def _suffix(filename: str) -> str:
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            f"file: {suffix or 'no extension'} is not a dataset type ({', '.join(FORMATS)})"
        )
    return suffix


@contextlib.contextmanager
def _spooled(stream: BinaryIO, suffix: str, folder: Path, limit: int) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        size = 0
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"file: larger than the upload limit of {limit} bytes")
                out.write(chunk)
        if size == 0:
            raise InvalidInput("file: the upload is empty")
        yield path


def upload_dataset(
    settings: Settings,
    db: Database,
    audit: AuditLog,
    actor: Actor,
    ctx: RequestContext,
    *,
    name: str,
    filename: str,
    stream: BinaryIO,
    spec: datasets.DataSpec,
) -> UploadedDataset:
    """Validate and register an uploaded file as a new version of ``name`` owned by ``actor``.

    Three phases: spool and register the file (a refused file is audited as failed), record
    who owns a new version, and audit the upload in the same transaction as the ownership.
    """
    registration = _spool_and_register(
        settings, db, audit, actor, ctx, name=name, filename=filename, stream=stream, spec=spec
    )
    version = registration.version
    with db.session() as session:
        refused = _record_ownership(session, actor, registration)
        _audit_upload(session, audit, actor, ctx, registration, refused)
    if refused:
        raise Conflict(
            f"name: {name} already has this content as a version you cannot use; "
            "upload it under another name"
        )
    return UploadedDataset(
        **_fields(version),
        created=registration.created,
        warnings=registration.report.warning_count,
    )


def _spool_and_register(
    settings: Settings,
    db: Database,
    audit: AuditLog,
    actor: Actor,
    ctx: RequestContext,
    *,
    name: str,
    filename: str,
    stream: BinaryIO,
    spec: datasets.DataSpec,
) -> datasets.Registration:
    """Stream the upload to a private temporary file (removed afterwards) and register it; a
    refused file (bad type, too large, invalid data) is audited as failed and re-raised."""
    try:
        suffix = _suffix(filename)
        limit = settings.api.max_upload_bytes
        with _spooled(stream, suffix, settings.dataset_store_dir, limit) as path:
            return datasets.register_dataset(settings, name, path, user=actor.username, spec=spec)
    except (InvalidInput, PayloadTooLarge) as err:
        _audit(db, audit, actor, ctx, f"{name}", "failed", {"error": str(err)[:500]})
        raise


def _record_ownership(session: Any, actor: Actor, registration: datasets.Registration) -> bool:
    """Make ``actor`` the owner of a newly created version; True when the upload is refused.

    Content that is already a version never changes owner: a shared (CLI-registered) version
    stays shared, and another user's stays theirs (refused unless the actor is an admin).
    """
    version = registration.version
    owner = _owner(session, version)
    refused = owner is not None and owner != actor.id and not actor.is_admin
    if registration.created:
        session.add(
            DatasetRecord(
                name=version.name,
                version=version.version,
                fingerprint=version.fingerprint,
                owner_id=actor.id,
            )
        )
    return refused


def _audit_upload(
    session: Any,
    audit: AuditLog,
    actor: Actor,
    ctx: RequestContext,
    registration: datasets.Registration,
    refused: bool,
) -> None:
    """The upload's audit record, in the caller's transaction (with the ownership it records)."""
    version = registration.version
    detail = {"rows": version.rows, "created": registration.created}
    outcome = "denied" if refused else "allowed"
    audit.record_by(
        session, actor, ctx, action="dataset.upload", outcome=outcome, target=version.ref,
        detail=detail,
    )  # fmt: skip


def _owner(session: Any, version: DatasetVersion) -> int | None:
    """Owner user id of an uploaded version; None for a CLI-registered (shared) one."""
    owner: int | None = session.scalar(
        select(DatasetRecord.owner_id).where(
            DatasetRecord.name == version.name, DatasetRecord.version == version.version
        )
    )
    return owner


def _audit(
    db: Database,
    audit: AuditLog,
    actor: Actor,
    ctx: RequestContext,
    target: str,
    outcome: str,
    detail: dict[str, Any],
) -> None:
    with db.session() as session:
        audit.record_by(
            session, actor, ctx, action="dataset.upload", outcome=outcome, target=target,
            detail=detail,
        )  # fmt: skip


@dataclass(frozen=True)
class DatasetView:
    """A dataset version as users see it: never the server's paths (``source``, ``path``)."""

    name: str
    version: str
    ref: str
    fingerprint: str
    rows: int
    label_counts: dict[str, int]
    registered_by: str
    registered_at: float
    text_column: str
    label_column: str
    report: dict[str, Any]


@dataclass(frozen=True)
class VisibleDataset(DatasetView):
    """A version a user may use, with its owner (None: registered from the CLI, shared)."""

    owner: str | None


@dataclass(frozen=True)
class UploadedDataset(DatasetView):
    """The version an upload registered; ``created`` False: the content already was one."""

    created: bool
    warnings: int


def _fields(version: DatasetVersion) -> dict[str, Any]:
    data = version.to_dict()
    data.pop("source", None)  # a server path
    data.pop("path", None)
    data["ref"] = version.ref
    return data


def view(version: DatasetVersion) -> DatasetView:
    """A version as users see it."""
    return DatasetView(**_fields(version))


def _visible_view(version: DatasetVersion, owners: dict[tuple[str, str], str]) -> VisibleDataset:
    return VisibleDataset(**_fields(version), owner=owners.get((version.name, version.version)))


def _owners(db: Database) -> dict[tuple[str, str], str]:
    with db.session() as session:
        rows = session.execute(
            select(DatasetRecord.name, DatasetRecord.version, User.username).join(
                User, User.id == DatasetRecord.owner_id
            )
        )
        return {(n, v): u for n, v, u in rows}


def visible(version: DatasetVersion, owners: dict[tuple[str, str], str], actor: Actor) -> bool:
    owner = owners.get((version.name, version.version))
    return owner is None or owner == actor.username or actor.is_admin


def list_visible(settings: Settings, db: Database, actor: Actor) -> list[VisibleDataset]:
    """The newest version of each dataset that the actor may see and train on (what
    ``NAME@latest`` means for them), with its owner."""
    owners = _owners(db)
    store = datasets.store_for(settings)
    newest = []
    for name in store.names():
        seen = [v for v in store.read_versions(name) if visible(v, owners, actor)]
        newest += seen[-1:]
    return [_visible_view(v, owners) for v in newest]


def show_visible(settings: Settings, db: Database, actor: Actor, ref: str) -> VisibleDataset:
    """One version (``NAME@VERSION`` or ``NAME@latest``) if the actor may see it."""
    version = resolve_visible(settings, db, actor, ref)
    return _visible_view(version, _owners(db))


def _owner_ids(db: Database, name: str) -> dict[str, int]:
    """Owner user id of each uploaded version of ``name`` (CLI-registered ones have none)."""
    with db.session() as session:
        rows = session.execute(
            select(DatasetRecord.version, DatasetRecord.owner_id).where(DatasetRecord.name == name)
        )
        return {version: owner for version, owner in rows}


def resolve_visible(settings: Settings, db: Database, actor: Actor, ref: str) -> DatasetVersion:
    """The version ``ref`` names among those ``actor`` may see (``latest``: the newest of them).

    NotFound, with the same words whether the version does not exist or is someone else's; the
    versions it lists are only the ones the actor may see.
    """
    try:
        parsed = parse_ref(ref)
        versions = datasets.store_for(settings).read_versions(parsed.name)
    except LoralabError:
        raise NotFound(f"no dataset {ref[:200]!r}") from None
    if not actor.is_admin:
        owners = _owner_ids(db, parsed.name)
        versions = [v for v in versions if owners.get(v.version, actor.id) == actor.id]
    if parsed.version == "latest":
        matches = versions[-1:]
    else:
        matches = [
            v
            for v in versions
            if v.version == parsed.version or v.fingerprint.startswith(parsed.version)
        ]
    if len(matches) != 1:
        known = ", ".join(v.version for v in versions)
        hint = f" (versions you may use: {known})" if known and not matches else ""
        why = "is ambiguous" if matches else "not found"
        raise NotFound(f"no dataset {ref!r}: {why}{hint}")
    return matches[0]


def check_visible(settings: Settings, db: Database, actor: Actor, field: str, ref: str) -> str:
    """The pinned ``NAME@vN`` that ``ref`` names for ``actor``, for a training job's ``field``;
    InvalidInput naming the field when the actor may not use it (or it does not exist)."""
    try:
        return resolve_visible(settings, db, actor, ref).ref
    except NotFound as err:
        raise InvalidInput(f"{field}: {err}") from None
