"""TrainRequest: what an API user may set on a training job, and nothing else.

Owner, state, attempts, output paths and every other server-side field are not fields here, so
``extra="forbid"`` refuses them. Data comes only from registered datasets (``NAME@VERSION``) and
base models only from the catalog or by folder name under ``storage.models_dir``: a request
never names a server path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loralab.datasets.versioning import parse_ref
from loralab.errors import InvalidInput
from loralab.settings import Settings
from loralab.training.catalog import CATALOG
from loralab.training.config import ConfigError, TrainConfig, build_config

_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _refuse_paths(field: str, value: str) -> str:
    """Refuse anything that looks like a filesystem path: ``/``, ``\\`` or ``..``."""
    if "/" in value or "\\" in value or ".." in value:
        raise ValueError(f"{field} must not be a path (no '/', '\\' or '..')")
    return value


class TrainRequest(BaseModel):
    """A training job as a user submits it (the API body of ``POST /train``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str | None = Field(default=None, max_length=100)
    base_model: str | None = Field(
        default=None,
        max_length=128,
        description="A catalog name or the folder name of a model under storage.models_dir.",
    )
    train_file: str = Field(
        max_length=200, description="A registered dataset: NAME@VERSION or NAME@latest."
    )
    validation_file: str | None = Field(
        default=None, max_length=200, description="A registered dataset, or empty: a split."
    )
    text_column: str | None = Field(default=None, max_length=128)
    label_column: str | None = Field(default=None, max_length=128)
    labels: list[str] | None = Field(default=None, max_length=1000)
    validation_split: float | None = None
    max_length: int | None = None
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    lora_target_modules: list[str] | None = Field(default=None, max_length=64)
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float | None = None
    seed: int | None = None
    eval_steps: int | None = None
    metric_for_best: Literal["accuracy", "macro_f1", "loss"] | None = None
    early_stopping_patience: int | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] | None = None
    model_name: str | None = Field(
        default=None,
        pattern=_MODEL_NAME,
        description="Registered model name for the result. Empty: the experiment name.",
    )

    @field_validator("train_file", "validation_file")
    @classmethod
    def _dataset_ref(cls, value: str | None) -> str | None:
        """Registered datasets only: ``NAME@VERSION`` / ``NAME@latest``, never a path."""
        if value is None:
            return None
        _refuse_paths("a dataset", value)
        try:
            parse_ref(value)
        except InvalidInput as err:
            raise ValueError(f"{err} (register the file first: a registered dataset)") from None
        return value

    @field_validator("base_model")
    @classmethod
    def _model_name_only(cls, value: str | None) -> str | None:
        """A name, never a path (it resolves server-side)."""
        return None if value is None else _refuse_paths("base_model", value)


def check_base_model(settings: Settings, name: str) -> str:
    """The name, if it is a catalog model or a model folder under ``storage.models_dir``.

    The job keeps the name, never the folder's server path: the worker resolves it when it
    trains (:func:`loralab.experiments.service.base_model_source`).
    """
    if name in CATALOG:
        return name
    _refuse_paths("base_model", name)
    folder = settings.storage.models_dir
    if folder is not None and name and (folder / name / "config.json").is_file():
        return name
    local = f" or a model folder in {folder.name}/" if folder is not None else ""
    raise InvalidInput(f"base_model: {name!r} is not a catalog model ({', '.join(CATALOG)}){local}")


def to_train_config(settings: Settings, request: TrainRequest) -> TrainConfig:
    """The full, validated TrainConfig; errors name the field (``InvalidInput``)."""
    data = request.model_dump(exclude_none=True, exclude={"model_name"})
    if "base_model" in data:
        data["base_model"] = check_base_model(settings, data["base_model"])
    if Path(data["train_file"]).exists():  # a file named like the ref would win: refuse it
        raise InvalidInput(f"train_file: {data['train_file']!r} is ambiguous on this server")
    try:
        return build_config(data)
    except ConfigError as err:
        raise InvalidInput(str(err)) from None
