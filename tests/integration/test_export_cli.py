"""`loralab export` end to end: a trained, registered tiny model exported by every kind of
reference (stage, version, run id), loaded by its target library, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from loralab.entrypoints.cli import common
from loralab.entrypoints.cli.main import app
from loralab.training import run_training
from loralab.training.config import build_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["the movie was good good", "it was bad bad really", "nice phone", "ugly food"]


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path
) -> tuple[Path, dict[str, str]]:
    """One registered cls run (model ``cli``) and one unregistered mean-pooled run."""
    from tests.conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("export-cli")
    data = write_csv(tmp / "train.csv", make_rows(64))
    mp = pytest.MonkeyPatch()
    mp.setenv("LORALAB_STORAGE__RESULTS_DIR", str(tmp / "results"))
    mp.chdir(tmp)
    runs: dict[str, str] = {}
    settings = {
        "base_model": str(tiny_bert),
        "train_file": str(data),
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 0.02,
        "max_length": 16,
    }
    try:
        recipe = tmp / "cli.yaml"
        recipe.write_text(yaml.safe_dump({**settings, "experiment": "cli"}))
        result = CliRunner().invoke(app, ["train", str(recipe)])  # trains and registers cli@1
        assert result.exit_code == 0, result.output
        (run_dir,) = (tmp / "results" / "cli").iterdir()
        runs["cli"] = run_dir.name
    finally:
        mp.undo()
    # an unregistered mean-pooled run, trained by the library alone (no MLflow needed)
    pooled = {**settings, "experiment": "pooled", "pooling": "mean", "max_steps": 4}
    runs["pooled"] = run_training(build_config(pooled), tmp / "results").run.run_id
    return tmp, runs


@pytest.fixture()
def cli(trained: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    tmp, _ = trained
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(tmp / "results"))
    monkeypatch.chdir(tmp)
    monkeypatch.setattr(common.console, "_width", 200)
    return CliRunner()


def loralab_probabilities(results: Path, run_id: str) -> list[list[float]]:
    """What loralab itself predicts (fp32, as the export is written)."""
    from loralab.training.inference import load_predictor
    from loralab.training.runs import find_run

    predictor = load_predictor(find_run(results, run_id), device="cpu", precision="fp32")
    return [list(p.probabilities.values()) for p in predictor.predict(TEXTS)]


def transformers_probabilities(folder: Path) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(TEXTS, truncation=True, max_length=16, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(model(**batch).logits, dim=-1).tolist()


def close(a: list[list[float]], b: list[list[float]]) -> bool:
    return all(abs(x - y) < 1e-5 for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb))


def test_export_by_stage_version_and_run_id(
    cli: CliRunner, trained: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    tmp, runs = trained
    expected = loralab_probabilities(tmp / "results", runs["cli"])

    staged = cli.invoke(app, ["export", "cli@staging", "--format", "adapter", "--out", "a"])
    assert staged.exit_code == 0, staged.output
    info = json.loads((Path("a") / "loralab_export.json").read_text())
    assert (info["model"], info["run_id"], info["format"]) == (
        "cli@staging",
        runs["cli"],
        "adapter",
    )
    assert (Path("a") / "adapter_model.safetensors").is_file()

    promoted = cli.invoke(app, ["models", "promote", "cli@1", "--to", "Production"])
    assert promoted.exit_code == 0, promoted.output
    out = tmp_path / "merged"
    merged = cli.invoke(app, ["export", "cli@production", "--format", "merged", "--out", str(out)])
    assert merged.exit_code == 0, merged.output
    assert "model.safetensors" in merged.output
    assert close(transformers_probabilities(out), expected)

    again = cli.invoke(app, ["export", "cli@1", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output and "--force" in again.output
    forced = cli.invoke(app, ["export", runs["cli"], "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "loralab_export.json").read_text())["model"] == runs["cli"]
    assert close(transformers_probabilities(out), expected)


def test_refusals_leave_nothing(cli: CliRunner, trained: tuple[Path, dict[str, str]]) -> None:
    _, runs = trained
    for args, message in (
        (["nosuch@1", "--out", "x"], "no registered model 'nosuch'"),
        (["cli@7", "--out", "x"], "no version '7'"),
        (["cli@1", "--out", "x", "--format", "pickle"], "--format 'pickle'"),
        ([runs["pooled"], "--out", "x", "--format", "merged"], "--format onnx"),
    ):
        result = cli.invoke(app, ["export", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output.replace("\n", " "), (args, result.output)
        assert not Path("x").exists()
        assert not [p for p in Path(".").iterdir() if p.name.startswith(".x.")]


def test_a_mean_pooled_run_exports_as_adapter(
    cli: CliRunner, trained: tuple[Path, dict[str, str]]
) -> None:
    """(ONNX of a mean-pooled run, with its agreement check: tests/unit/training/test_export.py)"""
    _, runs = trained
    result = cli.invoke(app, ["export", runs["pooled"], "--format", "adapter", "--out", "pa"])
    assert result.exit_code == 0, result.output
    assert "mean pooling" in (Path("pa") / "README.md").read_text()
    assert json.loads((Path("pa") / "loralab_export.json").read_text())["pooling"] == "mean"
