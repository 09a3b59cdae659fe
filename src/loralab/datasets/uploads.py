"""Datasets uploaded through the API: stored as registered versions, owned by the uploader.

An uploaded file is streamed to a private temporary file (size-capped, the client's file name
reduced to its extension), validated and registered by the data service, and the temporary file
is removed whatever happens. A version uploaded by a user is visible to that user and to
admins; versions registered from the CLI by an operator (no owner) are shared with everyone.

The rule itself lives in :mod:`loralab.datasets.access` (one owner per name, one visibility
rule): a version a user may not see looks exactly like one that does not exist, ``NAME@latest``
means the newest version they may see, and a name someone else owns (or a shared name) is
refused before anything is stored.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from loralab.audit.log import AuditLog
from loralab.datasets import service as datasets
from loralab.datasets.access import DatasetAccess
from loralab.datasets.versioning import (
    TEMP_PREFIX,
    DatasetVersion,
    check_name,
    disk_full_refused,
    holding,
    sweep_temporaries,
)
from loralab.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from loralab.identity import Actor, RequestContext, operator_actor
from loralab.infra.db import Database, DatasetRecord
from loralab.settings import Settings
from loralab.training.files import file_lock
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
    _sweep_once(folder)
    with tempfile.TemporaryDirectory(dir=folder, prefix=TEMP_PREFIX) as tmp, holding(Path(tmp)):
        path = Path(tmp) / f"upload{suffix}"
        size = 0
        with disk_full_refused("file"), path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"file: larger than the upload limit of {limit} bytes")
                out.write(chunk)
        if size == 0:
            raise InvalidInput("file: the upload is empty")
        yield path


_swept: set[Path] = set()


def _sweep_once(folder: Path) -> None:
    """The first upload of a process removes what uploads a crash cut short left behind."""
    if folder not in _swept:
        _swept.add(folder)
        sweep_temporaries(folder)


@contextlib.contextmanager
def _name_locked(
    settings: Settings, db: Database, actor: Actor, name: str
) -> Iterator[DatasetAccess]:
    """The dataset rule for ``actor``, under the per-name lock that every path adding a version
    of ``name`` holds until its ownership is recorded (the name checked before any file)."""
    check_name(name)
    with file_lock(settings.dataset_store_dir / ".locks" / f"{name}.lock"):
        yield DatasetAccess(settings, db, actor)


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
    """Validate and register an uploaded file as a new version of ``name``.

    A new name becomes the actor's; an existing name only takes versions from its owner (or an
    admin), checked before anything is stored and held under a per-name lock until the
    ownership is recorded, so two users cannot both claim a new name.
    """
    with _name_locked(settings, db, actor, name) as access:
        try:
            owner = access.check_add(name)
        except Conflict as err:
            _audit(db, audit, actor, ctx, name, "denied", {"error": str(err)[:500]})
            raise
        registration = _spool_and_register(
            settings, db, audit, actor, ctx, name=name, filename=filename, stream=stream, spec=spec
        )
        with db.session() as session:
            _record_ownership(session, owner, registration)
            _audit_upload(session, audit, actor, ctx, registration)
    return UploadedDataset(
        **_fields(registration.version),
        created=registration.created,
        warnings=registration.report.warning_count,
    )


def register_as_operator(
    settings: Settings,
    db: Database,
    *,
    name: str,
    file: Path,
    user: str,
    spec: datasets.DataSpec,
) -> datasets.Registration:
    """``loralab data register``: an operator stores a file as a new version of ``name``.

    An operator may add to any name (the rule of :class:`DatasetAccess` for an admin), and the
    version keeps the name's owner: added under a user's dataset it stays that user's (never
    shared with everyone, and that user's ``NAME@latest`` is still theirs); a new name or a
    shared one stays shared.
    """
    with _name_locked(settings, db, operator_actor(user), name) as access:
        _, owner = access.name_owner(name)
        registration = datasets.register_dataset(settings, name, file, user=user, spec=spec)
        with db.session() as session:
            _record_ownership(session, owner, registration)
    return registration


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
        # what the file decodes to is bounded by the upload limit too (compressed Parquet)
        bounded = settings.model_copy(
            update={
                "datasets": settings.datasets.model_copy(
                    update={"max_bytes": min(settings.datasets.max_bytes, limit)}
                )
            }
        )
        with _spooled(stream, suffix, settings.dataset_store_dir, limit) as path:
            return datasets.register_dataset(bounded, name, path, user=actor.username, spec=spec)
    except (InvalidInput, PayloadTooLarge) as err:
        _audit(db, audit, actor, ctx, f"{name}", "failed", {"error": str(err)[:500]})
        raise


def _record_ownership(session: Any, owner: int | None, registration: datasets.Registration) -> None:
    """A newly created version gets the name's owner (none: a shared name stays shared)."""
    version = registration.version
    if registration.created and owner is not None:
        session.add(
            DatasetRecord(
                name=version.name,
                version=version.version,
                fingerprint=version.fingerprint,
                owner_id=owner,
            )
        )


def _audit_upload(
    session: Any,
    audit: AuditLog,
    actor: Actor,
    ctx: RequestContext,
    registration: datasets.Registration,
) -> None:
    """The upload's audit record, in the caller's transaction (with the ownership it records)."""
    version = registration.version
    detail = {"rows": version.rows, "created": registration.created}
    audit.record_by(
        session, actor, ctx, action="dataset.upload", outcome="allowed", target=version.ref,
        detail=detail,
    )  # fmt: skip


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


def list_visible(settings: Settings, db: Database, actor: Actor) -> list[VisibleDataset]:
    """The newest version of each dataset that the actor may see and train on (what
    ``NAME@latest`` means for them), with its owner."""
    access = DatasetAccess(settings, db, actor)
    owners = access.owner_names()
    return [_visible_view(v, owners) for v in access.newest_of_each()]


def show_visible(settings: Settings, db: Database, actor: Actor, ref: str) -> VisibleDataset:
    """One version (``NAME@VERSION`` or ``NAME@latest``) if the actor may see it."""
    access = DatasetAccess(settings, db, actor)
    return _visible_view(access.resolve(ref), access.owner_names())


def resolve_visible(settings: Settings, db: Database, actor: Actor, ref: str) -> DatasetVersion:
    """The version ``ref`` names among those ``actor`` may see (``latest``: the newest of them);
    NotFound, with the same words whether it does not exist or is someone else's."""
    return DatasetAccess(settings, db, actor).resolve(ref)


def check_visible(settings: Settings, db: Database, actor: Actor, field: str, ref: str) -> str:
    """The pinned ``NAME@vN`` that ``ref`` names for ``actor``, for a training job's ``field``;
    InvalidInput naming the field when the actor may not use it (or it does not exist)."""
    try:
        return resolve_visible(settings, db, actor, ref).ref
    except NotFound as err:
        raise InvalidInput(f"{field}: {err}") from None
