"""The Model Card: what a registered model version is, validated by a Pydantic schema."""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loralab.errors import InvalidInput

EMBEDDING_DIM = 384
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Stage(str, Enum):
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


STAGE_NAMES = ", ".join(s.value for s in Stage)


def parse_stage(value: str) -> Stage:
    """Exactly one of the three names, any case; nothing is stripped ("production " is refused)."""
    for stage in Stage:
        if isinstance(value, str) and value.lower() == stage.value.lower():
            return stage
    raise InvalidInput(f"unknown stage {value!r}: use one of {STAGE_NAMES}")


def check_embedding(values: list[float] | Any) -> list[float]:
    """A 384-dim, finite, non-zero vector (returned as a list of floats)."""
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("embedding must be a list of numbers") from None
    if vector.ndim != 1 or vector.shape[0] != EMBEDDING_DIM:
        raise ValueError(f"embedding must have {EMBEDDING_DIM} values, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError("embedding holds NaN or infinite values")
    if not vector.any():
        raise ValueError("embedding is all zeros")
    if isinstance(values, list) and all(type(v) is float for v in values[:1]):
        return values
    return [float(v) for v in vector]


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=300)
    version: str | None = Field(default=None, max_length=100)
    fingerprint: str | None = Field(default=None, max_length=128)


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(ge=1)
    alpha: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    target_modules: list[str] | None = None


class ModelCard(BaseModel):
    """One registered model version. ``stage`` always mirrors the registry (see reconcile)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=r"^[1-9][0-9]*$")
    run_id: str = Field(min_length=1, max_length=200)
    base_model: str = Field(min_length=1, max_length=500)
    language: str = Field(
        min_length=1, max_length=100, description="The language of the data it was trained on."
    )
    base_languages: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="The languages the base model reads (empty: not recorded).",
    )
    task: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=5000)
    labels: list[str] = Field(min_length=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    dataset: DatasetRef
    lora: LoraSettings
    training: dict[str, Any] = Field(
        default_factory=dict, description="Training settings of the run (a starting point)."
    )
    created_by: str = Field(min_length=1, max_length=200)
    created_at: float = Field(gt=0)
    stage: Stage = Stage.STAGING
    embedding: list[float]

    @field_validator("embedding")
    @classmethod
    def _embedding_ok(cls, value: list[float]) -> list[float]:
        return check_embedding(value)

    @field_validator("metrics")
    @classmethod
    def _metrics_finite(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"metrics must be finite numbers: {', '.join(bad)}")
        return value

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def embedding_text(self) -> str:
        return card_text(self)


def card_text(card: ModelCard) -> str:
    """The text a card is embedded from: what a person would search for."""
    tags = ", ".join(f"{k} {v}" for k, v in sorted(card.tags.items()))
    return (
        f"{card.description} {card.task} model in {card.language}, base model "
        f"{card.base_model}. Labels: {', '.join(card.labels)}. Dataset: {card.dataset.name}. "
        f"Tags: {tags}."
    ).strip()


def _invalid(err: ValidationError) -> InvalidInput:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in err.errors()
    )
    return InvalidInput(f"invalid model card: {problems}")


def validate_card(data: dict[str, Any]) -> ModelCard:
    """A card from a dict, or InvalidInput naming every bad field."""
    try:
        return ModelCard.model_validate(data)
    except ValidationError as err:
        raise _invalid(err) from None


def validate_card_json(data: bytes | str) -> ModelCard:
    """A card from JSON text, or InvalidInput naming every bad field."""
    try:
        return ModelCard.model_validate_json(data)
    except ValidationError as err:
        raise _invalid(err) from None


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@VERSION`` -> (name, version); ``NAME@vVERSION`` is read the same way (the style of
    dataset versions), so ``sentiment@v3`` -> ("sentiment", "3"). InvalidInput otherwise."""
    match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]{0,99})@[vV]?([1-9][0-9]{0,8})", ref or "")
    if match is None:
        raise InvalidInput(f"give a model version as NAME@VERSION (e.g. sentiment@3), not {ref!r}")
    return match.group(1), match.group(2)


def version_number(tag: str) -> str | None:
    """``3`` or ``v3`` -> ``"3"``; None for anything else (an alias such as ``production``)."""
    match = re.fullmatch(r"[vV]?([1-9][0-9]{0,8})", tag)
    return match.group(1) if match else None
