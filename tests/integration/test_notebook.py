"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel (this venv's Python):
it trains the sample with a tiny step budget, tracked in a real MLflow store and registered,
shows the confusion matrix, predicts, and promotes the version to Production."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from loralab.errors import InvalidInput
from loralab.experiments import service
from loralab.registry.service import RegistryService
from loralab.settings import Settings
from loralab.training import ConfigError
from loralab.training.runs import read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"
KERNEL = "loralab-test"


def venv_kernel(home: Path) -> Path:
    """A kernel spec whose kernel is this test's Python (the project's venv), under ``home``."""
    spec = home / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "loralab (test)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return home


def with_parameters(nb: object, source: str) -> None:
    """Replace the cell tagged ``parameters`` (as papermill does)."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]  # type: ignore[attr-defined]
    assert len(cells) == 1, "the notebook has one parameters cell"
    cells[0].source = source


def texts_of(nb: object) -> str:
    """Every text output of the executed notebook, joined."""
    parts: list[str] = []
    for cell in nb.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    results, cards = tmp_path / "results", tmp_path / "model_registry"
    # The kernel inherits this environment: the run, MLflow (SQLite file) and cards in tmp_path.
    monkeypatch.setenv("JUPYTER_PATH", str(venv_kernel(tmp_path / "jupyter")))
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(results))
    monkeypatch.setenv("LORALAB_REGISTRY__CARD_DIR", str(cards))
    monkeypatch.setenv("LORALAB_MLFLOW__TRACKING_URI", f"sqlite:///{results / 'mlflow.db'}")
    monkeypatch.setenv("LORALAB_MLFLOW__ARTIFACT_ROOT", str(results / "mlartifacts"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    with_parameters(nb, 'MAX_STEPS = 4\nEXPERIMENT = "nbtest"')
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=240,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback

    text = texts_of(nb)
    assert "succeeded" in text
    assert "registered as nbtest@1" in text
    assert "nbtest@1: Staging -> Production" in text
    assert "predicted" in text  # the confusion-matrix table
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the confusion-matrix plot

    settings = Settings(
        storage={"results_dir": results},  # type: ignore[arg-type]
        registry={"card_dir": cards},  # type: ignore[arg-type]
        mlflow={"tracking_uri": f"sqlite:///{results / 'mlflow.db'}"},  # type: ignore[arg-type]
    )
    run = service.latest_run(settings, "nbtest")
    state = read_state(run)
    assert state["status"] == "succeeded"
    assert state["registered_model"] == "nbtest@1"
    tracked = service.mlflow_run(settings, state["tracker_run_id"])
    assert tracked.status == "FINISHED"
    assert "final_accuracy" in tracked.metrics
    assert tracked.params["max_steps"] == "4"
    card = RegistryService(settings).get_card("nbtest@1")
    assert card.stage.value == "Production"
    assert card.run_id == state["tracker_run_id"]


def tiny_config(model: Path, data: Path) -> dict[str, object]:
    return {
        "experiment": "nbapi",
        "base_model": str(model),
        "train_file": str(data),
        "max_steps": 3,
        "eval_steps": 3,
        "batch_size": 8,
    }


def test_track_without_registering_and_untracked(
    tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    """register=False: an MLflow run, no model version; track=False: neither."""
    import io

    from loralab import notebook
    from loralab.training.notebook import NotebookProgress

    results = tmp_path / "results"
    settings = Settings(
        storage={"results_dir": results},  # type: ignore[arg-type]
        registry={"card_dir": tmp_path / "cards"},  # type: ignore[arg-type]
    )
    out = io.StringIO()
    progress = NotebookProgress(8, widgets=False, file=out)
    tracked = notebook.train(
        tiny_config(tiny_bert, sentiment_csv),
        ["lora_r=4"],
        register=False,
        settings=settings,
        progress=progress,
    )
    assert tracked.status == "succeeded"
    assert "3/3" in out.getvalue()
    assert notebook.registered_version(tracked) is None
    mlflow_run = service.mlflow_run(settings, tracked.tracker_run_id)
    assert mlflow_run.status == "FINISHED"
    assert mlflow_run.params["lora_r"] == "4"
    assert not (tmp_path / "cards").exists() or not any((tmp_path / "cards").rglob("*.json"))
    assert len(notebook.predict(tracked, ["good good", "bad bad"], device="cpu")) == 2

    untracked = notebook.train(
        tiny_config(tiny_bert, sentiment_csv), track=False, register=False, settings=settings
    )
    assert untracked.status == "succeeded"
    assert untracked.tracker_run_id == ""  # the library's NullLogger: no MLflow run
    assert untracked.run.root.parent == results / "nbapi"

    with pytest.raises(ValueError, match="register=True needs track=True"):
        notebook.train(tiny_config(tiny_bert, sentiment_csv), track=False, settings=settings)
    with pytest.raises(InvalidInput, match="not registered"):
        notebook.promote(tracked, settings=settings)
    with pytest.raises(ConfigError, match="max_steps"):
        notebook.train(tiny_config(tiny_bert, sentiment_csv), ["max_steps=-1"], settings=settings)
