"""A sweep file: the base recipe, the search space, the budget, the metric and the pruner.

::

    name: sst2-search                 # the study's name (resume with --resume sst2-search)
    recipe: configs/sst2.yaml         # base settings (a recipe); `settings` override them
    settings: {max_steps: 600, eval_steps: 150}
    metric: accuracy                  # maximised: accuracy or macro_f1
    budget: {trials: 12, minutes: 90} # stop at whichever comes first
    pruner: {kind: median, startup_trials: 3, warmup_steps: 150}
    space:
      learning_rate: {type: float, low: 0.0005, high: 0.005, log: true}
      lora_r: {type: int, low: 4, high: 32, log: true}
      lora_target_modules: {type: categorical, choices: [[query, value], [query, key, value]]}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loralab.errors import InvalidInput
from loralab.sweeps.space import Param, check_space
from loralab.training.config import ConfigError, TrainConfig, build_config, load_config

if TYPE_CHECKING:
    from optuna.pruners import BasePruner

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Settings a sweep may not search: where the data is and what only names the run.
NOT_SEARCHED = {"experiment", "train_file", "validation_file", "text_column", "label_column"}


class Budget(BaseModel):
    """How much to try: a number of trials, minutes of wall time, or both (first one wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    trials: int | None = Field(default=None, ge=1, le=10_000, description="Trials in all.")
    minutes: float | None = Field(
        default=None, gt=0, le=7 * 24 * 60, description="Wall-clock minutes of this worker."
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.trials is None and self.minutes is None:
            raise ValueError("set trials, minutes or both")
        return self


class PrunerSpec(BaseModel):
    """Stop bad trials at an early evaluation (the metric is reported at every evaluation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["median", "successive_halving", "none"] = "median"
    startup_trials: int = Field(
        default=2, ge=0, le=1000, description="median: trials that run in full before pruning."
    )
    warmup_steps: int = Field(
        default=0, ge=0, le=10**9, description="median: training steps before a trial is judged."
    )
    reduction_factor: int = Field(
        default=3, ge=2, le=100, description="successive_halving: keep 1 in this many."
    )

    def build(self) -> BasePruner:
        import optuna

        if self.kind == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_steps
            )
        if self.kind == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(reduction_factor=self.reduction_factor)
        return optuna.pruners.NopPruner()


class SweepSpec(BaseModel):
    """A sweep as a file describes it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    recipe: str | None = Field(default=None, description="Base recipe (YAML), as loralab train.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Fixed settings.")
    space: dict[str, Param] = Field(min_length=1)
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    budget: Budget
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the sampler (TPE) of a new sweep; a resumed one draws afresh.",
    )

    def base_config(self, root: Path, overrides: list[str] | None = None) -> TrainConfig:
        """The base settings: the recipe (a relative path is taken from ``root``, the working
        folder, as ``loralab train`` does), ``settings``, then ``key=value`` ``overrides``;
        the metric picks the best checkpoint too. Trials change only what the space searches."""
        fixed = {**self.settings, "metric_for_best": self.metric}
        try:
            if self.recipe is None:
                return build_config(fixed, overrides)
            path = Path(self.recipe)
            recipe = load_config(path if path.is_absolute() else root / path)
            return build_config({**recipe.to_dict(), **fixed}, overrides)
        except ConfigError as err:
            raise InvalidInput(f"settings: {err}") from None

    def with_budget(self, trials: int | None, minutes: float | None) -> SweepSpec:
        """The spec with its budget changed where ``trials`` or ``minutes`` is given."""
        if trials is None and minutes is None:
            return self
        try:
            budget = Budget(
                trials=self.budget.trials if trials is None else trials,
                minutes=self.budget.minutes if minutes is None else minutes,
            )
            return self.model_copy(update={"budget": budget})
        except ValidationError as err:
            raise InvalidInput(f"budget: {_format(err)}") from None

    def trial_config(self, base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
        """The settings of one trial: the base with the trial's values."""
        try:
            return build_config({**base.to_dict(), **params})
        except ConfigError as err:
            raise InvalidInput(str(err)) from None

    def check(self, base: TrainConfig) -> None:
        """The space names searchable settings, each valid at its bounds and choices."""
        allowed = set(TrainConfig.model_fields) - NOT_SEARCHED - {"metric_for_best"}
        check_space(self.space, allowed, lambda values: self.trial_config(base, values))


def _format(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-"))
        what = "unknown setting" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{where or 'sweep'}: {what}")
    return "; ".join(parts)


def parse_spec(data: Any, where: str = "sweep") -> SweepSpec:
    """A SweepSpec from a mapping; errors name the field (``InvalidInput``)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: expected a mapping, got {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise InvalidInput(f"{where}: {_format(err)}") from None


def load_spec(path: Path) -> SweepSpec:
    """Read a sweep file (YAML); errors name the file and the field."""
    if not path.is_file():
        raise InvalidInput(f"sweep file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{path}: not valid YAML ({err})") from None
    return parse_spec(data, str(path))
