"""Datasets uploaded through the API: stored as registered versions, owned by the uploader.

An uploaded file is streamed to a private temporary file (size-capped, the client's file name
reduced to its extension), validated and registered by the data service, and the temporary file
is removed whatever happens. A version uploaded by a user is visible to that user and to
admins; versions registered from the CLI by an operator (no owner) are shared with everyone.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from loralab.adapters.db import Database, DatasetRecord, User
from loralab.datasets import service as datasets
from loralab.datasets.reader import FORMATS
from loralab.datasets.versioning import DatasetVersion
from loralab.errors import InvalidInput, NotFound, PayloadTooLarge
from loralab.settings import Settings

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
    audit: Any,
    actor: Any,
    ctx: Any,
    *,
    name: str,
    filename: str,
    stream: BinaryIO,
    spec: datasets.DataSpec,
) -> dict[str, Any]:
    """Validate and register an uploaded file as a new version of ``name`` owned by ``actor``."""
    try:
        suffix = _suffix(filename)
        with _spooled(
            stream, suffix, settings.dataset_store_dir, settings.api.max_upload_bytes
        ) as path:
            registration = datasets.register_dataset(
                settings, name, path, user=actor.username, spec=spec
            )
    except (InvalidInput, PayloadTooLarge) as err:
        _audit(db, audit, actor, ctx, f"{name}", "failed", {"error": str(err)[:500]})
        raise
    version = registration.version
    with db.session() as session:
        _own(session, version, actor)
        audit.record(
            session,
            action="dataset.upload",
            outcome="allowed",
            username=actor.username,
            role=actor.role,
            target=version.ref,
            client=ctx.client,
            request_id=ctx.request_id,
            detail={"rows": version.rows, "created": registration.created},
        )
    return {
        **view(version),
        "created": registration.created,
        "warnings": registration.report.warning_count,
    }


def _own(session: Any, version: DatasetVersion, actor: Any) -> None:
    if session.scalar(
        select(DatasetRecord.id).where(
            DatasetRecord.name == version.name, DatasetRecord.version == version.version
        )
    ):
        return  # the same content uploaded again: the first owner keeps it
    session.add(
        DatasetRecord(
            name=version.name,
            version=version.version,
            fingerprint=version.fingerprint,
            owner_id=actor.id,
        )
    )
    with contextlib.suppress(IntegrityError):
        session.flush()


def _audit(
    db: Database,
    audit: Any,
    actor: Any,
    ctx: Any,
    target: str,
    outcome: str,
    detail: dict[str, Any],
) -> None:
    with db.session() as session:
        audit.record(
            session,
            action="dataset.upload",
            outcome=outcome,
            username=actor.username,
            role=actor.role,
            target=target[:255],
            client=ctx.client,
            request_id=ctx.request_id,
            detail=detail,
        )


def view(version: DatasetVersion) -> dict[str, Any]:
    data = version.to_dict()
    data.pop("source", None)  # a server path
    data.pop("path", None)
    data["ref"] = version.ref
    return data


def _owners(db: Database) -> dict[tuple[str, str], str]:
    with db.session() as session:
        rows = session.execute(
            select(DatasetRecord.name, DatasetRecord.version, User.username).join(
                User, User.id == DatasetRecord.owner_id
            )
        )
        return {(n, v): u for n, v, u in rows}


def visible(version: DatasetVersion, owners: dict[tuple[str, str], str], actor: Any) -> bool:
    owner = owners.get((version.name, version.version))
    return owner is None or owner == actor.username or actor.role == "admin"


def list_visible(settings: Settings, db: Database, actor: Any) -> list[dict[str, Any]]:
    """Dataset versions the actor may see and train on, with their owner."""
    owners = _owners(db)
    return [
        {**view(v), "owner": owners.get((v.name, v.version))}
        for v in datasets.list_datasets(settings)
        if visible(v, owners, actor)
    ]


def show_visible(settings: Settings, db: Database, actor: Any, ref: str) -> dict[str, Any]:
    """One version (``NAME@VERSION`` or ``NAME@latest``) if the actor may see it."""
    version = datasets.show_version(settings, ref)
    owners = _owners(db)
    if not visible(version, owners, actor):
        raise NotFound(f"no dataset {ref!r}")
    return {**view(version), "owner": owners.get((version.name, version.version))}
