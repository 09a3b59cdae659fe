"""Dataset upload and browsing (validated and versioned by the data service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from loralab.datasets import uploads
from loralab.datasets.service import DataSpec
from loralab.entrypoints.api.deps import Context, CurrentUser, limited, services
from loralab.entrypoints.api.schemas import (
    DatasetList,
    DatasetUploaded,
    DatasetVersionPublic,
    errors,
)

router = APIRouter(tags=["datasets"])


@router.post(
    "/datasets",
    status_code=201,
    summary="Upload a dataset file as a new version",
    responses=errors(401, 409, 413, 422, 429, 507),
    dependencies=[Depends(limited("upload"))],
)
def upload(
    request: Request,
    actor: CurrentUser,
    ctx: Context,
    name: Annotated[str, Form(description="Dataset name, e.g. reviews", max_length=128)],
    file: Annotated[UploadFile, File(description=".csv, .tsv, .jsonl or .parquet")],
    text_column: Annotated[str, Form(max_length=128)] = "text",
    label_column: Annotated[str, Form(max_length=128)] = "label",
) -> DatasetUploaded:
    """Validated before anything is stored; errors name the line and field (422)."""
    found = services(request)
    uploaded = uploads.upload_dataset(
        found.settings,
        found.db,
        found.audit,
        actor,
        ctx,
        name=name,
        filename=file.filename or "",
        stream=file.file,
        spec=DataSpec(text_column=text_column, label_column=label_column),
    )
    return DatasetUploaded.of(uploaded)


@router.get("/datasets", summary="Dataset versions you may use", responses=errors(401))
def list_datasets(request: Request, actor: CurrentUser) -> DatasetList:
    found = services(request)
    visible = uploads.list_visible(found.settings, found.db, actor)
    return DatasetList.model_validate(visible, from_attributes=True)


@router.get(
    "/datasets/{ref}",
    summary="One dataset version (NAME@VERSION or NAME@latest)",
    responses=errors(401, 404),
)
def show_dataset(ref: str, request: Request, actor: CurrentUser) -> DatasetVersionPublic:
    found = services(request)
    return DatasetVersionPublic.of(uploads.show_visible(found.settings, found.db, actor, ref))
