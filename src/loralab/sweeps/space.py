"""A search space over TrainConfig fields: categorical, integer and (log-)uniform float.

Each parameter is checked against the base settings at its bounds and choices before any trial
runs, so a bad space fails at once with the field named (``space.lora_r.high: ...``), never
halfway through a sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loralab.errors import InvalidInput

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

MAX_PARAMS = 20
MAX_CHOICES = 50
Scalar = str | int | float | bool
Choice = Annotated[list[str], Field(min_length=1, max_length=64)] | Scalar


class IntParam(BaseModel):
    """Integers from ``low`` to ``high`` (inclusive), every ``step``, optionally log-spaced."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["int"]
    low: int = Field(ge=-(10**9), le=10**9)
    high: int = Field(ge=-(10**9), le=10**9)
    step: int = Field(default=1, ge=1, le=10**9)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log: a log-spaced int takes step 1")
        return self

    def values(self) -> list[Any]:
        return [self.low, self.high]


class FloatParam(BaseModel):
    """Floats from ``low`` to ``high``; ``log: true`` samples log-uniformly (learning rates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["float"]
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.low, self.high, self.log)
        return self

    def values(self) -> list[Any]:
        """The bounds and a value strictly between them: a whole-number setting (``lora_r``)
        passes at whole-number bounds but not in between, and must be refused up front."""
        inside = (
            self.low * (self.high / self.low) ** 0.37
            if self.log
            else self.low + (self.high - self.low) * 0.37
        )
        return [self.low, self.high] if self.low == self.high else [self.low, self.high, inside]


class CategoricalParam(BaseModel):
    """One of ``choices``: numbers, text, booleans, or lists (e.g. LoRA target modules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _distinct(self) -> CategoricalParam:
        labels = [choice_label(c) for c in self.choices]
        if len(set(labels)) != len(labels):
            raise ValueError("choices: must be distinct")
        return self

    def values(self) -> list[Any]:
        return list(self.choices)


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


def _check_bounds(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError(f"low ({low}) must be above 0 for a log scale")


def choice_label(choice: Any) -> Any:
    """What Optuna stores for a choice: a list becomes its comma-joined text (Optuna takes
    only scalars); TrainConfig reads that text back as the same list."""
    return ",".join(choice) if isinstance(choice, list) else choice


def check_space(
    space: Mapping[str, Param],
    allowed: set[str],
    build: Callable[[dict[str, Any]], object],
) -> None:
    """Every field is a known, searchable setting, and the settings are valid at each bound
    and each choice. ``build`` makes (and so validates) the settings from a mapping of the
    searched fields; it raises :class:`InvalidInput` (or ``ValueError``) naming the field."""
    if not space:
        raise InvalidInput("space: name at least one setting to search")
    if len(space) > MAX_PARAMS:
        raise InvalidInput(f"space: at most {MAX_PARAMS} settings")
    for name, param in space.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise InvalidInput(f"space.{name}: not a setting a sweep may search (known: {known})")
        for value in param.values():
            try:
                build({name: value})
            except (InvalidInput, ValueError) as err:
                raise InvalidInput(f"space.{name}: {value!r} is not valid: {err}") from None


def distributions(space: Mapping[str, Param]) -> dict[str, BaseDistribution]:
    """The Optuna distributions of a space (fixed for a study: every worker asks with them)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found: dict[str, BaseDistribution] = {}
    for name, param in space.items():
        if isinstance(param, IntParam):
            found[name] = IntDistribution(param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, FloatParam):
            found[name] = FloatDistribution(param.low, param.high, log=param.log)
        else:
            found[name] = CategoricalDistribution([choice_label(c) for c in param.choices])
    return found


def decode(space: Mapping[str, Param], params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params as settings: a categorical label back to its choice (a list again)."""
    settings: dict[str, Any] = {}
    for name, value in params.items():
        param = space.get(name)
        if isinstance(param, CategoricalParam):
            value = next((c for c in param.choices if choice_label(c) == value), value)
        settings[name] = value
    return settings


def ask(study: optuna.Study, space: Mapping[str, Param]) -> tuple[optuna.Trial, dict[str, Any]]:
    """A new trial of ``study`` and its settings."""
    trial = study.ask(distributions(space))
    return trial, decode(space, trial.params)


def suggest(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """Ask ``trial`` for a value of every parameter; return them as settings."""
    params: dict[str, Any] = {}
    for name, param in space.items():
        if isinstance(param, IntParam):
            params[name] = trial.suggest_int(
                name, param.low, param.high, step=param.step, log=param.log
            )
        elif isinstance(param, FloatParam):
            params[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
        else:
            params[name] = trial.suggest_categorical(name, [choice_label(c) for c in param.choices])
    return decode(space, params)
