"""loralab.notebook without training: configs from three shapes, refusals, quiet libraries."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from loralab import notebook
from loralab.training import ConfigError, TrainConfig

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_config_from_a_config_a_dict_or_a_recipe() -> None:
    config = TrainConfig(experiment="a", batch_size=8)
    assert notebook.as_config(config) is config
    assert notebook.as_config(config, ["batch_size=4"]).batch_size == 4
    assert notebook.as_config({"experiment": "b", "epochs": 1}, ["lora_r=4"]).lora_r == 4
    from_recipe = notebook.as_config(RECIPE, ["epochs=1"])
    assert from_recipe.experiment == "demo"
    assert from_recipe.epochs == 1
    assert notebook.as_config(str(RECIPE)).epochs == 8


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        notebook.as_config({"batch_size": 0})
    with pytest.raises(ConfigError, match="no_such_field"):
        notebook.as_config({}, ["no_such_field=1"])


def test_registering_needs_tracking() -> None:
    with pytest.raises(ValueError, match="register=True needs track=True"):
        notebook.train({"experiment": "x"}, track=False, register=True)


def test_quiet_libraries_restores_the_levels() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    logging.getLogger("mlflow").setLevel(logging.DEBUG)
    try:
        with notebook.quiet_libraries():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
            assert logging.getLogger("mlflow").level == logging.WARNING
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled()
        assert logging.getLogger("mlflow").level == logging.DEBUG
    finally:
        hf_logging.set_verbosity_warning()
        logging.getLogger("mlflow").setLevel(logging.NOTSET)
