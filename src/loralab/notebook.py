"""loralab from a notebook: train with a live bar, tracked in MLflow and registered like the CLI.

``loralab train`` tracks every run in MLflow and registers a succeeded run as a new model
version in Staging; ``run_training`` (the pure library) does neither. :func:`train` does what the
CLI does, through the same services, and shows a progress bar in the notebook::

    from loralab import notebook
    result = notebook.train("configs/demo.yaml", ["max_steps=50"])   # tracked and registered
    notebook.predict(result, ["what a lovely film"])
    notebook.promote(result)                                         # Staging -> Production

Settings (results home, MLflow store, registry) come from the environment and ``.env`` like
the CLI's (``LORALAB_STORAGE__RESULTS_DIR``, ``LORALAB_MLFLOW__TRACKING_URI``, ...), or pass
``settings=``. ``track=False`` trains with the library alone: nothing goes to MLflow or the
registry.
"""

from __future__ import annotations

import getpass
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.settings import Settings, load_settings
from loralab.training import (
    Prediction,
    TrainConfig,
    TrainResult,
    build_config,
    load_config,
    load_predictor,
    run_training,
)
from loralab.training.interfaces import ProgressReporter, StopSignal
from loralab.training.notebook import NotebookProgress
from loralab.training.runs import RunPaths, read_state

if TYPE_CHECKING:
    from loralab.registry.service import TransitionResult

ConfigLike = TrainConfig | Mapping[str, Any] | str | Path


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """While it lasts, keep the notebook's output for our bar and notes, as the CLI does:
    transformers' info lines, loading bars and future warnings, and MLflow's info lines stay out
    (everything is still in the run's logs.txt). The previous levels come back afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    mlflow_log = logging.getLogger("mlflow")
    mlflow_level = mlflow_log.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    mlflow_log.setLevel(max(mlflow_level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        mlflow_log.setLevel(mlflow_level)


def as_config(config: ConfigLike, overrides: list[str] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a config, a dict of fields or a YAML recipe's path, with
    ``key=value`` overrides (the CLI's syntax). Errors name the field (ConfigError)."""
    overrides = list(overrides or [])
    if isinstance(config, TrainConfig):
        return build_config(config.to_dict(), overrides) if overrides else config
    if isinstance(config, Mapping):
        return build_config(dict(config), overrides)
    return load_config(Path(config), overrides)


def train(
    config: ConfigLike,
    overrides: list[str] | None = None,
    *,
    track: bool = True,
    register: bool = True,
    model_name: str | None = None,
    settings: Settings | None = None,
    progress: ProgressReporter | None = None,
    stop: StopSignal | None = None,
) -> TrainResult:
    """Train one run, as ``loralab train`` does, with a progress bar in the notebook.

    ``track``: log the run to MLflow (params, per-step curves, evaluations, artifacts) and
    validate the data first, as the CLI does. ``register``: register a succeeded run as a new
    version of ``model_name`` (default: the experiment name) in Staging, with its model card;
    it needs ``track``. Bad input raises before anything is written (the platform's
    ``InvalidInput`` when tracked, the library's ConfigError/DataError otherwise).
    """
    if register and not track:
        raise ValueError("register=True needs track=True: a registered version is an MLflow run")
    cfg = as_config(config, overrides)
    settings = settings or load_settings()
    progress = progress or NotebookProgress(cfg.batch_size)
    with quiet_libraries():
        if not track:
            return run_training(cfg, settings.storage.results_dir, progress=progress, stop=stop)
        from loralab.experiments import service

        return service.train(
            settings, cfg, progress, stop, model_name=model_name, register=register
        )


def registered_version(result: TrainResult | RunPaths) -> str | None:
    """The model version (``NAME@N``) a run was registered as, or None."""
    run = result.run if isinstance(result, TrainResult) else result
    ref = read_state(run).get("registered_model")
    return str(ref) if ref else None


def predict(
    result: TrainResult | RunPaths, texts: list[str], device: str = "auto"
) -> list[Prediction]:
    """Classify ``texts`` with a run's saved model (merged base + adapter)."""
    run = result.run if isinstance(result, TrainResult) else result
    with quiet_libraries():
        return load_predictor(run, device=device).predict(texts)


def promote(
    model: TrainResult | str,
    stage: str = "Production",
    *,
    reason: str = "",
    force: bool = False,
    user: str | None = None,
    settings: Settings | None = None,
) -> TransitionResult:
    """Move a registered version (``NAME@N``, or the version a run was registered as) to
    ``stage``, as ``loralab models promote`` does: the promotion gate applies, the change is
    in the stage history, and Production archives the previous Production."""
    from loralab.errors import InvalidInput
    from loralab.registry.service import RegistryService

    if isinstance(model, TrainResult):
        ref = registered_version(model)
        if ref is None:
            raise InvalidInput(
                f"run {model.run.run_id} is not registered (train it with register=True)"
            )
    else:
        ref = model
    registry = RegistryService(settings or load_settings())
    try:
        return registry.transition(ref, stage, user or getpass.getuser(), reason, force)
    finally:
        registry.close()
