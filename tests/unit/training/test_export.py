"""Export formats, each loaded with its target library and compared with loralab's predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loralab.training.config import build_config
from loralab.training.export import ExportError, export_run, publish_folder
from loralab.training.inference import load_predictor
from loralab.training.runs import RunPaths

TEXTS = [
    "the movie was good good",
    "it was bad bad really",
    "quite nice service",
    "ugly phone",
    "the food was very superb",
    "nasty",
]


def _train(tiny_bert: Path, data: Path, results: Path, pooling: str) -> RunPaths:
    from loralab.training import run_training

    config = build_config(
        {
            "experiment": f"export-{pooling}",
            "base_model": str(tiny_bert),
            "train_file": str(data),
            "pooling": pooling,
            "max_steps": 6,
            "batch_size": 8,
            "max_length": 16,
            "learning_rate": 0.02,
        }
    )
    return run_training(config, results).run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, RunPaths]:
    from tests.conftest import make_rows, write_csv

    tmp = tmp_path_factory.mktemp("export")
    data = write_csv(tmp / "train.csv", make_rows(64))
    return {p: _train(tiny_bert, data, tmp / "results", p) for p in ("cls", "mean")}


def _loralab_probs(run: RunPaths) -> torch.Tensor:
    predictor = load_predictor(run, device="cpu", precision="fp32")
    return torch.tensor(
        [[p.probabilities[name] for name in predictor.labels] for p in predictor.predict(TEXTS)]
    )


def _probs(model: torch.nn.Module, tokenizer: object, max_length: int = 16) -> torch.Tensor:
    batch = tokenizer(  # type: ignore[operator]
        TEXTS, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        return torch.softmax(model(**batch).logits.float(), dim=-1)


# -- the folder appears whole or not at all --------------------------------------------------


def test_publish_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty.*--force"):
        publish_folder(out, False, lambda d: (d / "new.txt").write_text("x"))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    publish_folder(out, True, lambda d: (d / "new.txt").write_text("x"))
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left


def test_publish_leaves_nothing_when_the_build_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_folder(out, False, broken)
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        publish_folder(out, True, broken)  # --force: the old folder stays until success
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_publish_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        publish_folder(target, True, lambda d: None)


def test_an_unknown_format_and_an_unsaved_run_are_refused(tmp_path: Path) -> None:
    run = RunPaths(tmp_path / "exp" / "r1")
    with pytest.raises(ExportError, match="format 'pickle'"):
        export_run(run, "pickle", tmp_path / "out")
    with pytest.raises(ExportError, match="no saved model"):
        export_run(run, "adapter", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- each format with its own library ----------------------------------------------------------


@pytest.mark.slow
def test_merged_loads_with_transformers_alone(runs: dict[str, RunPaths], tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = runs["cls"]
    out = export_run(run, "merged", tmp_path / "merged", ref="tiny@1")
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    expected = _loralab_probs(run)
    assert torch.allclose(_probs(model, tokenizer), expected, atol=1e-5)
    info = json.loads((out / "loralab_export.json").read_text())
    assert (info["format"], info["model"], info["pooling"]) == ("merged", "tiny@1", "cls")


@pytest.mark.slow
def test_merged_refuses_a_mean_pooled_run(runs: dict[str, RunPaths], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"mean pooling.*--format onnx.*--format adapter"):
        export_run(runs["mean"], "merged", tmp_path / "merged")
    assert not (tmp_path / "merged").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_adapter_loads_with_peft(
    runs: dict[str, RunPaths], tmp_path: Path, tiny_bert: Path, pooling: str
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from loralab.training.pooling import apply_pooling

    run = runs[pooling]
    out = export_run(run, "adapter", tmp_path / "adapter")
    assert {p.name for p in out.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer",
        "label_map.json",
        "README.md",
        "loralab_export.json",
    }
    info = json.loads((out / "loralab_export.json").read_text())
    assert info["pooling"] == pooling and info["base_model"] == str(tiny_bert)
    readme = (out / "README.md").read_text()
    assert str(tiny_bert) in readme
    assert ("mean pooling" in readme) is (pooling == "mean")
    labels = json.loads((out / "label_map.json").read_text())["labels"]
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    if pooling == "mean":
        apply_pooling(base, "mean")  # what the README tells the reader to do
    model = PeftModel.from_pretrained(base, out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert torch.allclose(_probs(model, tokenizer), _loralab_probs(run), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_onnx_runs_with_onnxruntime(
    runs: dict[str, RunPaths], tmp_path: Path, pooling: str
) -> None:
    import subprocess
    import sys

    run = runs[pooling]
    out = export_run(run, "onnx", tmp_path / "onnx")
    assert (out / "predict.py").is_file() and (out / "label_map.json").is_file()
    info = json.loads((out / "loralab_export.json").read_text())
    assert info["pooling"] == pooling and "labels equal" in info["onnx_agreement"]
    expected = _loralab_probs(run)
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import predict; "
        "s, t, l = predict.load(); "
        "print(json.dumps([r['probabilities'] for r in predict.predict(sys.argv[2:], s, t, l)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out), *TEXTS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    labels = json.loads((out / "label_map.json").read_text())["labels"]
    got = torch.tensor([[row[name] for name in labels] for row in rows])
    assert torch.allclose(got, expected, atol=1e-4)
