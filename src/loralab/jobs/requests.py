"""TrainRequest: what an API user may set on a training job, and nothing else.

Owner, state, attempts, output paths and every other server-side field are not fields here, so
``extra="forbid"`` refuses them. Data comes only from registered datasets (``NAME@VERSION``) and
base models only from the catalog or by folder name under ``storage.models_dir``: a request
never names a server path.

Every training setting here takes its type's constraints from :class:`TrainConfig`
(:func:`from_config`), so whatever the API accepts, training accepts too; the API only
narrows (shorter texts, bounded lists) and checks the whole as a TrainConfig at the edge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loralab.datasets.versioning import parse_ref
from loralab.errors import InvalidInput
from loralab.settings import Settings
from loralab.training.catalog import CATALOG
from loralab.training.config import ConfigError, TrainConfig, build_config

_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NOT_TRAINING = {"model_name", "allow_language_mismatch"}  # request fields TrainConfig lacks
_CONSTRAINTS = ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern")
_NARROWER = {"max_length": min, "le": min, "lt": min, "min_length": max, "ge": max, "gt": max}


def config_constraints(name: str) -> dict[str, Any]:
    """The constraints TrainConfig declares on field ``name`` (ge, le, pattern, ...)."""
    found: dict[str, Any] = {}
    for item in TrainConfig.model_fields[name].metadata:
        for key in _CONSTRAINTS:
            value = getattr(item, key, None)
            if value is not None:
                found[key] = value
    return found


def from_config(name: str, description: str | None = None, **narrower: Any) -> Any:
    """An optional request field with TrainConfig's constraints for ``name``; ``narrower``
    may only tighten them (the API's own bounds on sizes)."""
    constraints = config_constraints(name)
    for key, value in narrower.items():
        pick = _NARROWER[key]
        constraints[key] = pick(constraints[key], value) if key in constraints else value
    help_text = description or TrainConfig.model_fields[name].description
    return Field(default=None, description=help_text, **constraints)


def _refuse_paths(field: str, value: str) -> str:
    """Refuse anything that looks like a filesystem path: ``/``, ``\\`` or ``..``."""
    if "/" in value or "\\" in value or ".." in value:
        raise ValueError(f"{field} must not be a path (no '/', '\\' or '..')")
    return value


class TrainRequest(BaseModel):
    """A training job as a user submits it (the API body of ``POST /train``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str | None = from_config("experiment")
    base_model: str | None = from_config(
        "base_model",
        "A catalog name or the folder name of a model under storage.models_dir.",
        max_length=128,
    )
    train_file: str = Field(
        min_length=1,
        max_length=200,
        description="A registered dataset: NAME@VERSION or NAME@latest.",
    )
    validation_file: str | None = from_config(
        "validation_file", "A registered dataset, or empty: a split.", max_length=200
    )
    text_column: str | None = from_config("text_column", max_length=128)
    label_column: str | None = from_config("label_column", max_length=128)
    labels: list[str] | None = from_config("labels", max_length=1000)
    validation_split: float | None = from_config("validation_split")
    max_length: int | None = from_config("max_length")
    lora_r: int | None = from_config("lora_r")
    lora_alpha: int | None = from_config("lora_alpha")
    lora_dropout: float | None = from_config("lora_dropout")
    lora_target_modules: list[str] | None = from_config("lora_target_modules", max_length=64)
    epochs: float | None = from_config("epochs")
    max_steps: int | None = from_config("max_steps")
    batch_size: int | None = from_config("batch_size")
    learning_rate: float | None = from_config("learning_rate")
    weight_decay: float | None = from_config("weight_decay")
    warmup_ratio: float | None = from_config("warmup_ratio")
    seed: int | None = from_config("seed")
    eval_steps: int | None = from_config("eval_steps")
    metric_for_best: Literal["accuracy", "macro_f1", "loss"] | None = from_config("metric_for_best")
    early_stopping_patience: int | None = from_config("early_stopping_patience")
    device: Literal["auto", "cpu", "cuda", "mps"] | None = from_config("device")
    precision: Literal["auto", "fp32", "bf16", "fp16"] | None = from_config("precision")
    model_name: str | None = Field(
        default=None,
        pattern=_MODEL_NAME,
        description="Registered model name for the result. Empty: the experiment name.",
    )
    allow_language_mismatch: bool = Field(
        default=False,
        description="Train even when most of the data is in a language the base model does "
        "not read (the job then carries the warning).",
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

    @model_validator(mode="after")
    def _a_train_config(self) -> TrainRequest:
        """The settings together are a valid TrainConfig (e.g. two distinct columns)."""
        try:
            TrainConfig(**self.settings())
        except ValidationError as err:
            issues = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in err.errors()
            )
            raise ValueError(issues) from None
        return self

    def settings(self) -> dict[str, Any]:
        """The training settings chosen, as TrainConfig takes them."""
        return self.model_dump(exclude_none=True, exclude=_NOT_TRAINING)


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
    data = request.settings()
    if "base_model" in data:
        data["base_model"] = check_base_model(settings, data["base_model"])
    if Path(data["train_file"]).exists():  # a file named like the ref would win: refuse it
        raise InvalidInput(f"train_file: {data['train_file']!r} is ambiguous on this server")
    try:
        return build_config(data)
    except ConfigError as err:
        raise InvalidInput(str(err)) from None
