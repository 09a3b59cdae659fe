"""A local base model is stored by folder name and resolved to its folder only at train time:
job rows and job views never hold the server's models_dir path."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tests.helpers.jobs_fakes import Ctx, Who, register_dataset

from loralab.experiments.service import base_model_source
from loralab.infra.db import Database, Job
from loralab.jobs.requests import TrainRequest
from loralab.jobs.service import JobService
from loralab.settings import Settings


def as_text(view: Any) -> str:
    plain = asdict(view) if is_dataclass(view) and not isinstance(view, type) else view
    return json.dumps(plain, default=str)


def server_paths(settings: Settings) -> list[str]:
    folder = settings.storage.models_dir
    assert folder is not None
    return [str(folder), str(folder.resolve())]


def test_a_job_stores_and_shows_the_model_folder_name_only(
    jobs: JobService,
    db: Database,
    people: dict[str, Who],
    settings: Settings,
    tiny_bert: Path,
    tmp_path: Path,
) -> None:
    ref = register_dataset(settings, tiny_bert, tmp_path)
    request = TrainRequest(train_file=ref, base_model=tiny_bert.name)
    views = [jobs.submit(people["alice"], request, Ctx())]
    views += jobs.list(people["alice"])
    with db.session() as session:
        configs = [row.config for row in session.scalars(select(Job))]
    assert [config["base_model"] for config in configs] == [tiny_bert.name]
    for text in [as_text(view) for view in views] + [json.dumps(c) for c in configs]:
        assert tiny_bert.name in text
        assert not any(path in text for path in server_paths(settings)), text


def test_the_folder_name_resolves_to_its_folder_at_train_time(
    settings: Settings, tiny_bert: Path, tmp_path: Path
) -> None:
    assert base_model_source(settings, tiny_bert.name) == str(tiny_bert.resolve())
    assert base_model_source(settings, "minilm-l6") is None  # the catalog resolves it
    assert base_model_source(settings, str(tiny_bert)) is None  # a path (the CLI) stays a path
    assert base_model_source(settings, "no-such-model") is None
    assert base_model_source(settings, "..") is None
    unset = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"models_dir": None})}
    )
    assert base_model_source(unset, tiny_bert.name) is None
