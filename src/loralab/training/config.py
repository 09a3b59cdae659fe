"""TrainConfig: an experiment recipe as typed, frozen data.

Loaded from YAML and overridden with ``key=value`` strings. Unknown keys and out-of-range values
raise :class:`ConfigError`, whose message names the field.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config file or override is missing, malformed or out of range."""


# Free-text settings. YAML reads `2024` as an int and `2024-01-05` as a date; these stay text.
_TEXT_FIELDS = (
    "experiment",
    "base_model",
    "train_file",
    "validation_file",
    "text_column",
    "label_column",
)


# Step counts beyond this are typos, not plans (and overflow the counters of the libraries below).
MAX_COUNT = 10**9


class TrainConfig(BaseModel):
    """Everything that defines one training run. Saved in full as config.yaml beside the run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- what and where ---------------------------------------------------------------------
    experiment: str = Field(
        default="default",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Experiment name: groups runs in results/<experiment>/ and in MLflow.",
    )
    base_model: str = Field(
        default="minilm-l6",
        min_length=1,
        description="Catalog name (minilm-l6, distilbert-base-uncased, roberta-base, "
        "albert-base-v2, bert-base-chinese), a Hub id, or a local model directory.",
    )
    train_file: str = Field(
        default="data/samples/sentiment_en.csv",
        min_length=1,
        description="Training data: .csv, .tsv, .jsonl or .parquet.",
    )
    validation_file: str | None = Field(
        default=None,
        description="Validation data. Empty: a seeded, stratified split of the training data.",
    )
    text_column: str = Field(default="text", min_length=1, description="Column with the text.")
    label_column: str = Field(default="label", min_length=1, description="Column with the label.")
    labels: tuple[str, ...] | None = Field(
        default=None,
        description="Declared label set, in id order. Empty: the labels found in the training "
        "data (integers in numeric order, strings in alphabetical order).",
    )
    validation_split: float = Field(
        default=0.1, gt=0.0, lt=0.5, description="Share held out for validation when no file."
    )
    max_length: int = Field(default=128, ge=8, le=4096, description="Tokens kept per text.")
    pooling: Literal["auto", "cls", "mean"] = Field(
        default="auto",
        description="How the classifier reads a text: cls = the first token, as the "
        "architecture does; mean = the mean of all token vectors (what sentence-embedding "
        "bases such as minilm-l6 were trained for); auto = the base model's own.",
    )

    # -- LoRA --------------------------------------------------------------------------------
    lora_r: int = Field(default=8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: int = Field(default=16, ge=1, le=1024, description="LoRA scaling alpha.")
    lora_dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="LoRA dropout.")
    lora_target_modules: tuple[str, ...] | None = Field(
        default=None, description="Modules that get LoRA. Empty: the base model's catalog default."
    )

    # -- optimisation ------------------------------------------------------------------------
    epochs: float = Field(default=3.0, gt=0.0, le=1000.0, description="Training epochs.")
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Stop after this many optimiser steps (overrides epochs).",
    )
    batch_size: int = Field(default=32, ge=1, le=4096, description="Training batch size.")
    eval_batch_size: int = Field(default=128, ge=1, le=8192, description="Evaluation batch size.")
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0, description="Share of warm-up steps.")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        default="linear", description="Learning-rate schedule after warm-up."
    )
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="Gradient clipping norm.")
    group_by_length: bool = Field(
        default=True, description="Batch texts of similar length together (much faster on CPU)."
    )
    seed: int = Field(
        default=42, ge=0, le=2**32 - 1, description="Random seed (split, init, shuffling)."
    )

    # -- evaluation and checkpoints ------------------------------------------------------------
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Evaluate and checkpoint every N steps. Empty: each epoch.",
    )
    metric_for_best: Literal["accuracy", "macro_f1", "loss"] = Field(
        default="accuracy", description="Validation metric that picks the best checkpoint."
    )
    early_stopping_patience: int = Field(
        default=3,
        ge=0,
        le=MAX_COUNT,
        description="Stop after N evaluations without improvement (0: never).",
    )
    fastest_tolerance: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="'Fastest' checkpoint: the earliest whose metric is within this of the best.",
    )
    logging_steps: int = Field(
        default=10, ge=1, le=MAX_COUNT, description="Log loss and lr every N steps."
    )

    # -- hardware ------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="Where to train. auto: cuda, then mps, then cpu."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto",
        description="auto: bf16 on CPUs with native bf16 and on CUDA that supports it, "
        "fp16 on older CUDA, fp32 elsewhere.",
    )
    num_threads: int | None = Field(
        default=None, ge=1, le=512, description="CPU threads for torch. Empty: torch's default."
    )

    @field_validator(*_TEXT_FIELDS, mode="before")
    @classmethod
    def _scalar_to_text(cls, value: Any) -> Any:
        if isinstance(value, int | float | datetime.date) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("labels", "lora_target_modules", mode="before")
    @classmethod
    def _coerce_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            if any(isinstance(v, bool) for v in value):
                raise ValueError("YAML reads yes/no/true/false as booleans: quote them ('yes')")
            return tuple(str(v) for v in value)
        return value

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("declare at least two labels")
            if len(set(value)) != len(value):
                raise ValueError("labels must be distinct")
        return value

    @model_validator(mode="after")
    def _columns_differ(self) -> TrainConfig:
        if self.text_column == self.label_column:
            raise ValueError("text_column and label_column must differ")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict of every field (tuples as lists)."""
        data = self.model_dump(mode="json")
        return data


def _format_error(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown setting")
        else:
            lines.append(f"{field}: {item['msg']}")
    return "; ".join(lines)


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if key in _TEXT_FIELDS and value is not None and not isinstance(value, str):
        value = raw.strip()  # experiment=007 stays "007", not the int 7
    return key, value


def build_config(data: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
    """Build a TrainConfig from a mapping plus ``key=value`` overrides."""
    merged = dict(data)
    for text in overrides or []:
        key, value = _parse_override(text)
        merged[key] = value
    try:
        return TrainConfig(**merged)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None
    except TypeError as err:
        raise ConfigError(str(err)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML recipe and apply overrides. Errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    if any(not isinstance(k, str) for k in data):
        raise ConfigError(f"{path}: every setting name must be a string")
    try:
        return build_config(data, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the complete, resolved config as YAML."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
