"""Sweep files and search spaces: bad input names the field; params round-trip to settings."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from loralab.errors import InvalidInput
from loralab.sweeps.space import choice_label, decode, distributions, suggest
from loralab.sweeps.spec import SweepSpec, load_spec, parse_spec

TINY = Path(__file__).with_name("sweep-tiny.yaml")
REPO = Path(__file__).resolve().parents[3]


def spec_with(**changes: object) -> dict:
    data: dict = {
        "settings": {"train_file": "data/samples/sentiment_en.csv"},
        "budget": {"trials": 2},
        "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    }
    data.update(changes)
    return data


def checked(data: dict) -> SweepSpec:
    spec = parse_spec(data)
    spec.check(spec.base_config(REPO))
    return spec


def test_the_shipped_sweep_files_parse_and_check() -> None:
    tiny = load_spec(TINY)
    tiny.check(tiny.base_config(REPO))
    sst2 = load_spec(REPO / "configs" / "sweep-sst2.yaml")
    assert sst2.recipe == "configs/sst2.yaml"
    assert set(sst2.space) == {"learning_rate", "lora_r", "lora_alpha", "lora_target_modules"}
    # the recipe is read only when the data is at hand; the space alone is still valid here
    assert sst2.budget.trials == 16 and sst2.pruner.kind == "median"


@pytest.mark.parametrize(
    ("space", "words"),
    [
        ({"lora_rank": {"type": "int", "low": 2, "high": 8}}, "space.lora_rank: not a setting"),
        ({"train_file": {"type": "categorical", "choices": ["a.csv"]}}, "space.train_file"),
        ({"lora_r": {"type": "int", "low": 8, "high": 2}}, "space.lora_r.int: Value error, low"),
        ({"lora_r": {"type": "int", "low": 0, "high": 8}}, "space.lora_r: 0 is not valid"),
        ({"lora_r": {"type": "int", "low": 1, "high": 9999}}, "space.lora_r: 9999 is not valid"),
        (
            {"learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
            "must be above 0 for a log scale",
        ),
        ({"lora_alpha": {"type": "categorical", "choices": []}}, "space.lora_alpha.categorical"),
        ({"lr_scheduler": {"type": "categorical", "choices": ["cosine", "step"]}}, "'step'"),
        ({"lora_r": {"type": "normal", "low": 1, "high": 2}}, "space.lora_r"),
        # whole-number bounds on a whole-number setting, searched as floats: refused up front
        ({"lora_r": {"type": "float", "low": 1.0, "high": 4.0}}, "space.lora_r: 2.11"),
        ({}, "space"),
    ],
)
def test_bad_spaces_name_the_field(space: dict, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        checked(spec_with(space=space))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"budget": {}}, "budget: Value error, set trials, minutes or both"),
        ({"budget": {"trials": 0}}, "budget.trials"),
        ({"metric": "loss"}, "metric"),
        ({"pruner": {"kind": "hyperband"}}, "pruner.kind"),
        ({"surprise": 1}, "surprise: unknown setting"),
        ({"name": "../escape"}, "name"),
        ({"settings": {"lora_r": "many"}}, "settings: lora_r"),
    ],
)
def test_bad_sweep_files_name_the_field(changes: dict, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        checked(spec_with(**changes))
    assert words in str(caught.value)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="sweep file not found"):
        load_spec(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("space: [unclosed", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_spec(broken)


def test_the_metric_picks_the_best_checkpoint_of_every_trial() -> None:
    spec = checked(spec_with(metric="macro_f1"))
    assert spec.base_config(REPO).metric_for_best == "macro_f1"


def test_overrides_apply_over_the_file_and_are_checked() -> None:
    spec = parse_spec(spec_with())
    assert spec.base_config(REPO, ["max_steps=7"]).max_steps == 7
    with pytest.raises(InvalidInput, match="max_steps"):
        spec.base_config(REPO, ["max_steps=-1"])


def test_list_choices_round_trip_through_optuna_as_text() -> None:
    spec = checked(
        spec_with(
            space={
                "lora_target_modules": {
                    "type": "categorical",
                    "choices": [["query", "value"], ["query", "key", "value"]],
                },
                "lora_r": {"type": "int", "low": 2, "high": 16, "log": True},
            }
        )
    )
    dists = distributions(spec.space)
    assert dists["lora_target_modules"].choices == ("query,value", "query,key,value")  # type: ignore[attr-defined]
    assert decode(spec.space, {"lora_target_modules": "query,key,value"}) == {
        "lora_target_modules": ["query", "key", "value"]
    }
    assert choice_label(["a", "b"]) == "a,b" and choice_label(3) == 3
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        params = suggest(study.ask(), spec.space)
        config = spec.trial_config(spec.base_config(REPO), params)
        assert list(config.lora_target_modules or ()) == params["lora_target_modules"]
        assert 2 <= config.lora_r <= 16


def test_duplicate_choices_are_refused() -> None:
    with pytest.raises(InvalidInput, match="distinct"):
        checked(spec_with(space={"lora_alpha": {"type": "categorical", "choices": [8, 8]}}))


def test_the_budget_may_be_changed_from_the_command_line() -> None:
    spec = parse_spec(spec_with(budget={"trials": 5, "minutes": 10}))
    assert spec.with_budget(None, None) is spec
    assert spec.with_budget(2, None).budget.model_dump() == {"trials": 2, "minutes": 10}
    with pytest.raises(InvalidInput, match="budget"):
        spec.with_budget(0, None)
