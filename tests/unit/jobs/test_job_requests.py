"""TrainRequest: only user-settable fields, registered datasets, named base models."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from pydantic import ValidationError
from tests.helpers.jobs_fakes import make_settings

from loralab.errors import InvalidInput
from loralab.jobs.requests import TrainRequest, to_train_config
from loralab.training.config import TrainConfig, build_config

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


def test_train_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="lora_r"):
        TrainRequest(**OK, lora_r=0)
    with pytest.raises(ValidationError, match="experiment"):
        TrainRequest(**OK, experiment="../x")


def test_model_name_is_a_plain_name() -> None:
    assert TrainRequest(**OK, model_name="sentiment-v2").model_name == "sentiment-v2"
    with pytest.raises(ValidationError, match="model_name"):
        TrainRequest(**OK, model_name="../../etc")


# --- one source of truth: what the API accepts, training accepts --------------------------------

TRAINING_FIELDS = sorted(set(TrainRequest.model_fields) - {"model_name", "allow_language_mismatch"})
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64, 10**9, 10**9 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.1, 0.5, 1.0, 1e-12, 1000.0, 1000.1]),
    st.text(max_size=12),
    st.sampled_from(["a@latest", "text", "label", "cpu", "cuda", "fp16", "loss", "minilm-l6"]),
    st.lists(st.text(max_size=4), max_size=4),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(TRAINING_FIELDS), ANY_VALUE, max_size=6))
def test_whatever_the_api_accepts_the_training_config_accepts(fields: dict) -> None:
    body = json.dumps({"train_file": "reviews@latest", **fields}, allow_nan=True)
    try:
        request = TrainRequest.model_validate_json(body)
    except ValidationError:
        return  # refused at the edge: a 422, never a failure in the worker
    build_config(request.settings())  # raises ConfigError if training would refuse it


@pytest.mark.parametrize(
    "field, value",
    [("seed", 2**64), ("seed", 2**32), ("max_steps", 2**63), ("eval_steps", 2**63)],
)
def test_values_training_refuses_are_refused_by_the_api(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        TrainRequest(**OK, **{field: value})


def test_the_request_declares_the_training_configs_constraints() -> None:
    schema = TrainRequest.model_json_schema()["properties"]
    config = TrainConfig.model_json_schema()["properties"]
    for name in TRAINING_FIELDS:
        if name == "train_file":
            continue
        declared = next(s for s in schema[name]["anyOf"] if s.get("type") != "null")
        wanted = config[name].get("anyOf", [config[name]])[0]
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern"):
            assert declared.get(key) == wanted.get(key), (name, key)
