"""TrainConfig: defaults, immutability, YAML loading, key=value overrides, validation, saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from loralab.training.config import (
    ConfigError,
    TrainConfig,
    build_config,
    load_config,
    save_config,
)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults and immutability --------------------------------------------------------------


def test_defaults_are_valid_and_documented() -> None:
    config = TrainConfig()
    assert config.base_model == "minilm-l6"
    assert config.lora_r == 8
    assert config.validation_split == pytest.approx(0.1)
    assert config.labels is None
    # house rule: every field has a help text
    undocumented = [name for name, f in TrainConfig.model_fields.items() if not f.description]
    assert undocumented == []


def test_config_is_frozen() -> None:
    config = TrainConfig()
    with pytest.raises(ValidationError):
        config.lora_r = 16  # type: ignore[misc]
    assert config.lora_r == 8


# -- YAML files ---------------------------------------------------------------------------------


def test_load_good_file(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "c.yaml",
        "experiment: sst2\nlora_r: 16\nlearning_rate: 5.0e-4\nlabels: [neg, pos]\n"
        "group_by_length: false\n",
    )
    config = load_config(path)
    assert config.experiment == "sst2"
    assert config.lora_r == 16
    assert config.learning_rate == pytest.approx(5e-4)
    assert config.labels == ("neg", "pos")
    assert config.group_by_length is False
    assert config.batch_size == TrainConfig().batch_size  # untouched fields keep defaults


def test_load_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write_yaml(tmp_path / "c.yaml", "")) == TrainConfig()


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path)
    assert "nope.yaml" in str(info.value)


def test_load_malformed_yaml(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bad.yaml", "lora_r: [8, 16\nepochs: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert "bad.yaml" in str(info.value)


def test_load_top_level_list_is_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "list.yaml", "- lora_r: 8\n- epochs: 3\n")
    with pytest.raises(ConfigError, match="expected a mapping.*list"):
        load_config(path)


def test_load_unknown_key_names_file_and_field(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "lora_rank: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "c.yaml" in message
    assert "lora_rank" in message
    assert "unknown setting" in message


def test_load_out_of_range_value_names_field(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "lora_dropout: 1.5\n")
    with pytest.raises(ConfigError, match="lora_dropout"):
        load_config(path)


# -- key=value overrides -------------------------------------------------------------------------


def test_override_int_float_bool(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "lora_r: 4\n")
    config = load_config(
        path, ["lora_r=32", "learning_rate=0.0002", "group_by_length=false", "epochs=2"]
    )
    assert config.lora_r == 32 and isinstance(config.lora_r, int)
    assert config.learning_rate == pytest.approx(2e-4)
    assert config.group_by_length is False
    assert config.epochs == pytest.approx(2.0)


def test_override_scientific_notation() -> None:
    # PyYAML reads "1e-4" (no dot) as a string; the float field must still accept it.
    assert build_config({}, ["learning_rate=1e-4"]).learning_rate == pytest.approx(1e-4)


def test_override_list_by_comma() -> None:
    config = build_config({}, ["labels=neg, neutral,pos", "lora_target_modules=query,key,value"])
    assert config.labels == ("neg", "neutral", "pos")
    assert config.lora_target_modules == ("query", "key", "value")


def test_override_list_by_yaml_syntax() -> None:
    config = build_config({}, ["labels=[neg, pos]", "lora_target_modules=[q_lin, v_lin]"])
    assert config.labels == ("neg", "pos")
    assert config.lora_target_modules == ("q_lin", "v_lin")


def test_override_integer_labels_become_text() -> None:
    assert build_config({}, ["labels=[0, 1, 2]"]).labels == ("0", "1", "2")


def test_override_empty_value_means_none() -> None:
    config = build_config({"validation_file": "val.csv"}, ["validation_file="])
    assert config.validation_file is None


def test_override_wins_over_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "seed: 1\n")
    assert load_config(path, ["seed=7"]).seed == 7


def test_override_of_unknown_key() -> None:
    with pytest.raises(ConfigError, match="lora_rank: unknown setting"):
        build_config({}, ["lora_rank=8"])


@pytest.mark.parametrize("text", ["lora_r", "=8"])
def test_override_without_key_or_equals(text: str) -> None:
    with pytest.raises(ConfigError, match="override"):
        build_config({}, [text])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("experiment=2024", "2024"),
        ("experiment=007", "007"),
        ("experiment=2024-01-05", "2024-01-05"),
        ("text_column=0", "0"),
    ],
)
def test_override_text_fields_stay_text(override: str, expected: str) -> None:
    # YAML would read these as int / date; the field is text and the pattern allows digits.
    key = override.split("=", 1)[0]
    assert getattr(build_config({}, [override]), key) == expected


def test_numeric_experiment_name_in_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "experiment: 2024\n")
    assert load_config(path).experiment == "2024"


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("lora_r=0", "lora_r"),
        ("lora_r=300", "lora_r"),
        ("validation_split=0.7", "validation_split"),
        ("validation_split=0", "validation_split"),
        ("learning_rate=-1", "learning_rate"),
        ("learning_rate=.nan", "learning_rate"),
        ("device=gpu", "device"),
        ("precision=int8", "precision"),
        ("metric_for_best=f1", "metric_for_best"),
        ("batch_size=0", "batch_size"),
        ("max_length=4", "max_length"),
        ("epochs=0", "epochs"),
        ("seed=-1", "seed"),
        ("lora_r=1.5", "lora_r"),
        ("group_by_length=maybe", "group_by_length"),
        ("experiment=has space", "experiment"),
        ("experiment=../escape", "experiment"),
        ("labels=[pos]", "labels"),
        ("labels=[pos, pos]", "labels"),
    ],
)
def test_invalid_value_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, [override])
    assert str(info.value).startswith(f"{field}:"), str(info.value)


def test_text_and_label_column_must_differ() -> None:
    with pytest.raises(ConfigError, match="text_column and label_column must differ"):
        build_config({"text_column": "x", "label_column": "x"})


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, ["lora_r=0", "device=gpu"])
    assert "lora_r" in str(info.value)
    assert "device" in str(info.value)


def test_non_string_keys_in_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", "1: 2\n")
    with pytest.raises(ConfigError, match="must be a string"):
        load_config(path)


# -- saving ------------------------------------------------------------------------------------


def test_save_config_round_trips(tmp_path: Path) -> None:
    config = build_config(
        {},
        [
            "experiment=2024",
            "labels=[neg, neutral, pos]",
            "lora_target_modules=query,value",
            "learning_rate=3e-4",
            "max_steps=50",
            "validation_file=val.tsv",
            "device=cpu",
            "precision=fp32",
            "group_by_length=false",
        ],
    )
    path = tmp_path / "config.yaml"
    save_config(config, path)
    loaded = load_config(path)
    assert loaded == config
    # complete: every field is written, not just the non-default ones
    assert set(yaml.safe_load(path.read_text(encoding="utf-8"))) == set(TrainConfig.model_fields)


def test_save_default_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    save_config(TrainConfig(), path)
    assert load_config(path) == TrainConfig()


def test_to_dict_is_yaml_safe() -> None:
    data = build_config({}, ["labels=a,b"]).to_dict()
    assert data["labels"] == ["a", "b"]
    yaml.safe_dump(data)  # raises on tuples or other non-plain types


def test_boolean_looking_labels_must_be_quoted() -> None:
    with pytest.raises(ConfigError, match="labels: .*quote them"):
        build_config({"labels": [True, False]})
    assert build_config({"labels": ["yes", "no"]}).labels == ("yes", "no")
