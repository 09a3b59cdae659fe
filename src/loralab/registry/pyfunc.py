"""The MLflow model of every registered version: a ``pyfunc`` wrapper around the LoRA adapter.

Each registered version's source is an MLflow model folder (``model/`` in its MLflow run) that
``mlflow.pyfunc.load_model("models:/NAME@production")`` and ``mlflow models serve`` can use:

* ``MLmodel`` with a signature (input: a ``text`` string column; output: ``label``,
  ``label_name``, ``probability`` and ``p_<label>`` per class) and an input example;
* ``artifacts/run/artifacts/``: the adapter (safetensors), the tokenizer, the label map and
  ``model_info.json``, a few MB, with ``artifacts/run/loralab-manifest.json`` (sha256 and size
  of each file: another machine checks what it fetched, ``infra.artifacts.VersionCache``).
  The heavy base model is *referenced* by its name in
  ``model_info.json`` (a catalog name such as ``minilm-l6``, found by the catalog, or a local
  folder), never copied;
* ``code/loralab_model.py``: the model as code (``mlflow.models.set_model``), so nothing is
  pickled. Loading needs loralab installed (``mlflow models serve --env-manager local``).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema, TensorSpec

from loralab.errors import InvalidInput, NotFound
from loralab.infra.artifacts import write_manifest
from loralab.infra.model_registry import MODEL_ARTIFACT
from loralab.infra.tracking import RUN_ID_TAG
from loralab.settings import Settings
from loralab.training.runs import RunNotFound, RunPaths, find_run

FILES = "run"  # the artifact key: a folder laid out like a run (artifacts/adapter, ...)
RUN_ARTIFACT = f"{MODEL_ARTIFACT}/artifacts/{FILES}"  # that folder in the version's MLflow run
TEXT_COLUMN = "text"
# MLflow's model_config, overridable at load time:
# mlflow.pyfunc.load_model(uri, model_config={"device": "cuda", "precision": "auto"})
DEFAULT_CONFIG = {"device": "auto", "precision": "fp32"}  # fp32: loralab's reference answers
MODEL_CODE = """\"\"\"A loralab LoRA classifier as an MLflow pyfunc model (from code).\"\"\"

import mlflow

from loralab.registry.pyfunc import LoralabClassifier

mlflow.models.set_model(LoralabClassifier())
"""


def probability_column(label: str) -> str:
    return f"p_{label}"


def signature(labels: list[str]) -> ModelSignature:
    """Input: a ``text`` column; output: label id, label name, its probability, one
    probability column per class."""
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("long", "label"),
        ColSpec("string", "label_name"),
        ColSpec("double", "probability"),
        *(ColSpec("double", probability_column(name)) for name in labels),
    ]
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", TEXT_COLUMN)]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def texts_of(model_input: Any) -> list[str]:
    """The texts of a pyfunc input: a DataFrame with a ``text`` column (or its only column),
    a list of strings, or one string."""
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN in model_input.columns:
            column = model_input[TEXT_COLUMN]
        elif len(model_input.columns) == 1:
            column = model_input.iloc[:, 0]
        else:
            found = ", ".join(map(str, model_input.columns))
            raise InvalidInput(f"the input needs a {TEXT_COLUMN!r} column (columns: {found})")
        values = column.tolist()
    elif isinstance(model_input, list | tuple | pd.Series):
        values = list(model_input)
    else:
        raise InvalidInput(f"cannot read texts from a {type(model_input).__name__}")
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise InvalidInput(f"row(s) {bad[:10]} have no text (empty, missing or not a string)")
    return [str(v) for v in values]


# MLflow nags about predict's missing type hints when the class is defined (under its own
# "once" filter, so only recording the warnings keeps them off the terminal); the hints are left
# out on purpose: MLflow would take them as the signature instead of ``signature()``.
with warnings.catch_warnings(record=True):

    class LoralabClassifier(PythonModel):
        """Loads the base (by name, through the catalog) + the version's adapter, merged."""

        def __init__(self) -> None:
            self._predictor: Any = None

        def load_context(self, context: PythonModelContext) -> None:
            from loralab.training.inference import load_predictor

            root = Path(context.artifacts[FILES])
            config = {**DEFAULT_CONFIG, **(context.model_config or {})}
            self._predictor = load_predictor(
                RunPaths(root), device=str(config["device"]), precision=str(config["precision"])
            )

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # noqa: ANN001
            """A DataFrame with a ``text`` column -> label, label_name, probability, p_<label>."""
            if self._predictor is None:
                self.load_context(context)
            texts = texts_of(model_input)
            labels = list(self._predictor.labels)
            rows = [
                {
                    "label": p.label,
                    "label_name": p.label_name,
                    "probability": p.probability,
                    **{probability_column(n): p.probabilities[n] for n in labels},
                }
                for p in self._predictor.predict(texts)
            ]
            columns = ["label", "label_name", "probability", *map(probability_column, labels)]
            return pd.DataFrame(rows, columns=columns)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "transformers", "peft", "safetensors", "tokenizers", "pandas"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # pragma: no cover - all are loralab dependencies
            pins.append(package)
    return pins


def stage_files(run: RunPaths, dest: Path) -> Path:
    """The small files of ``run`` that the model needs, laid out like a run folder, with a
    manifest of them (relative path -> sha256 and size)."""
    if not run.model_info.is_file() or not run.adapter.is_dir() or not run.tokenizer.is_dir():
        raise NotFound(f"run {run.run_id} has no saved model (adapter, tokenizer, model info)")
    target = RunPaths(dest)
    target.artifacts.mkdir(parents=True)
    shutil.copytree(run.adapter, target.adapter, symlinks=False)
    shutil.copytree(run.tokenizer, target.tokenizer, symlinks=False)
    shutil.copy2(run.model_info, target.model_info)
    if run.label_map.is_file():
        shutil.copy2(run.label_map, target.label_map)
    write_manifest(dest)
    return dest


def save_pyfunc_model(run: RunPaths, path: Path) -> Path:
    """Write the MLflow model of ``run`` into ``path`` (which must not exist yet)."""
    import json

    import mlflow.pyfunc

    info = json.loads(run.model_info.read_text(encoding="utf-8"))
    labels = [str(x) for x in info["labels"]]
    with tempfile.TemporaryDirectory(prefix="loralab-pyfunc-") as tmp:
        files = stage_files(run, Path(tmp) / FILES)
        code = Path(tmp) / "loralab_model.py"
        code.write_text(MODEL_CODE, encoding="utf-8")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(code),
            artifacts={FILES: str(files)},
            signature=signature(labels),
            input_example=pd.DataFrame({TEXT_COLUMN: ["an example text to classify"]}),
            pip_requirements=_requirements(),
            metadata={"loralab_run_id": run.run_id, "base_model": str(info["base_model"])},
            model_config=dict(DEFAULT_CONFIG),
        )
    return path


def packager(settings: Settings) -> Callable[[Any, Path], None]:
    """What :class:`~loralab.infra.model_registry.MlflowModelRegistry` calls to write the MLflow
    model of an MLflow run (its ``loralab.run_id`` tag names the local run folder)."""

    def package(mlflow_run: Any, path: Path) -> None:
        run_id = (mlflow_run.data.tags or {}).get(RUN_ID_TAG)
        if not run_id:
            raise NotFound(f"MLflow run {mlflow_run.info.run_id} has no {RUN_ID_TAG} tag")
        try:
            run = find_run(settings.storage.results_dir, run_id)
        except RunNotFound as err:
            raise NotFound(str(err)) from None
        save_pyfunc_model(run, path)

    return package
