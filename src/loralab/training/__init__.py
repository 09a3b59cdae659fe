"""loralab.training: a pure library for LoRA fine-tuning of text classifiers.

It imports nothing from the rest of loralab, nor any web, queue, ORM or UI framework::

    from pathlib import Path
    from loralab.training import TrainConfig, run_training
    result = run_training(TrainConfig(train_file="data/samples/sentiment_en.csv"), Path("results"))

Names are imported lazily so that reading a config does not pay for importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConfigError": "config",
    "TrainConfig": "config",
    "build_config": "config",
    "load_config": "config",
    "Prediction": "inference",
    "Predictor": "inference",
    "load_predictor": "inference",
    "TrainingFailed": "errors",
    "TrainResult": "loop",
    "prepare_training": "prepare",
    "resume_training": "loop",
    "run_training": "loop",
}

__all__ = [
    "ConfigError",
    "Prediction",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "TrainingFailed",
    "build_config",
    "load_config",
    "load_predictor",
    "prepare_training",
    "resume_training",
    "run_training",
]

if TYPE_CHECKING:  # pragma: no cover
    from loralab.training.config import ConfigError, TrainConfig, build_config, load_config
    from loralab.training.errors import TrainingFailed
    from loralab.training.inference import Prediction, Predictor, load_predictor
    from loralab.training.loop import (
        TrainResult,
        resume_training,
        run_training,
    )
    from loralab.training.prepare import prepare_training


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loralab.training' has no attribute {name!r}")
    return getattr(import_module(f"loralab.training.{module}"), name)
