"""TrainRequest: only user-settable fields, registered datasets, named base models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.helpers.jobs_fakes import make_settings

from loralab.errors import InvalidInput
from loralab.jobs.requests import TrainRequest, to_train_config

OK = {"train_file": "reviews@latest"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("owner", "mallory"),
        ("owner_id", 1),
        ("user_id", 1),
        ("state", "succeeded"),
        ("role", "admin"),
        ("attempts", 0),
        ("worker", "w"),
        ("run_id", "20260101-000000-abcdef"),
        ("model_version", "x@1"),
        ("output_dir", "/tmp/x"),
        ("num_threads", 64),
    ],
)
def test_server_side_fields_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        TrainRequest(**OK, **{field: value})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    assert err.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    "value",
    [
        "/etc/passwd",
        "data/samples/sentiment_en.csv",
        "../secret@v1",
        "reviews@v1/../../x",
        "C:\\data\\x.csv",
        "reviews.csv",
        "reviews@nope",
    ],
)
@pytest.mark.parametrize("field", ["train_file", "validation_file"])
def test_data_must_be_a_registered_dataset_ref(field: str, value: str) -> None:
    data = {**OK, field: value}
    with pytest.raises(ValidationError) as err:
        TrainRequest(**data)
    assert err.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("value", ["/models/x", "../tiny-bert", "a/b", "a\\b", ".."])
def test_base_model_is_never_a_path(value: str) -> None:
    with pytest.raises(ValidationError, match="base_model"):
        TrainRequest(**OK, base_model=value)


def test_train_file_is_required() -> None:
    with pytest.raises(ValidationError, match="train_file"):
        TrainRequest()


def test_catalog_and_local_model_names_are_kept_by_name(tmp_path: Path, tiny_bert: Path) -> None:
    settings = make_settings(tmp_path, tiny_bert)
    config = to_train_config(settings, TrainRequest(**OK, base_model="minilm-l6"))
    assert config.base_model == "minilm-l6"
    local = to_train_config(settings, TrainRequest(**OK, base_model=tiny_bert.name, epochs=1))
    assert local.base_model == tiny_bert.name and local.epochs == 1  # the name, never the path
    assert local.train_file == "reviews@latest"


def test_unknown_model_name_is_refused(tmp_path: Path, tiny_bert: Path) -> None:
    settings = make_settings(tmp_path, tiny_bert)
    with pytest.raises(InvalidInput, match="base_model: 'no-such-model'"):
        to_train_config(settings, TrainRequest(**OK, base_model="no-such-model"))


def test_train_config_errors_name_the_field(tmp_path: Path, tiny_bert: Path) -> None:
    settings = make_settings(tmp_path, tiny_bert)
    with pytest.raises(InvalidInput, match="lora_r"):
        to_train_config(settings, TrainRequest(**OK, lora_r=0))
    with pytest.raises(InvalidInput, match="experiment"):
        to_train_config(settings, TrainRequest(**OK, experiment="../x"))


def test_model_name_is_a_plain_name() -> None:
    assert TrainRequest(**OK, model_name="sentiment-v2").model_name == "sentiment-v2"
    with pytest.raises(ValidationError, match="model_name"):
        TrainRequest(**OK, model_name="../../etc")
