"""serving.onnx_cache and the ModelPool's hot model on ONNX Runtime: exported once, cached,
verified; a corrupt or mismatched cache is rebuilt, never served; an export that fails leaves
the version on PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from loralab.serving import onnx_cache as cache_mod
from loralab.serving.engine import ModelPool
from loralab.serving.onnx_cache import MANIFEST, OnnxCache, OnnxUnavailable
from loralab.serving.resolve import ModelHandle, _from_run
from loralab.training.catalog import resolve_model
from loralab.training.inference import load_predictor
from loralab.training.model import build_lora_model
from loralab.training.onnx_export import ONNX_FILE, OnnxExportError
from loralab.training.runs import RunPaths

LABELS = ["positive", "negative"]
TEXTS = ["good good film", "bad bad film", "ok"]


def make_run(
    results: Path, base: Path, run_id: str, pooling: str = "cls", seed: int = 0
) -> RunPaths:
    """A saved run as training leaves it (adapter, tokenizer, model_info), without training:
    LoRA and head weights are random, so each seed gives a different model."""
    run = RunPaths(results / "onnx" / run_id)
    run.root.mkdir(parents=True)
    (run.root / "config.yaml").write_text("experiment: onnx\n", encoding="utf-8")
    torch.manual_seed(seed)
    model = build_lora_model(resolve_model(str(base)), LABELS, 4, 8, 0.0, None, pooling)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "classifier" in name:
                param.copy_(torch.randn_like(param) * 0.5)
    model.save_pretrained(str(run.adapter), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(run.tokenizer))
    run.model_info.write_text(
        json.dumps(
            {"base_model": str(base), "labels": LABELS, "max_length": 32, "pooling": pooling}
        ),
        encoding="utf-8",
    )
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, ModelHandle]:
    results = tmp_path_factory.mktemp("results")
    return {
        name: _from_run(
            make_run(results, tiny_bert, f"20261201-00000{i}-aaaaa{i}", pooling, i),
            key=f"m@{i}",
            stage=None,
        )
        for i, (name, pooling) in enumerate((("cls", "cls"), ("mean", "mean"), ("other", "cls")))
    }


def _torch_answers(handle: ModelHandle) -> list[tuple[str, float]]:
    predictor = load_predictor(handle.run, device="cpu", precision="fp32")
    return [(p.label_name, p.probability) for p in predictor.predict(TEXTS)]


def _check_same(got: list, handle: ModelHandle) -> None:
    want = _torch_answers(handle)
    assert [p.label_name for p in got] == [w[0] for w in want]
    assert max(abs(p.probability - w[1]) for p, w in zip(got, want, strict=True)) < 1e-4


def test_pooling_is_read_from_the_run_and_splits_bases(runs: dict[str, ModelHandle]) -> None:
    assert runs["cls"].pooling == "cls" and runs["mean"].pooling == "mean"
    assert runs["cls"].group != runs["mean"].group
    assert runs["cls"].group == runs["other"].group
    pool = ModelPool(cache_size=4, device="cpu", precision="fp32")
    for name in ("cls", "mean", "other"):
        _check_same(pool.predict(runs[name], TEXTS), runs[name])
    assert len(pool._bases) == 2  # cls + other share one base; mean has its own


@pytest.mark.parametrize("name", ["cls", "mean"])
def test_export_once_then_from_the_cache(
    runs: dict[str, ModelHandle], tmp_path: Path, name: str
) -> None:
    handle = runs[name]
    cache = OnnxCache(tmp_path / "cache", threads=1)
    first = cache.load(handle)
    assert first.built and first.folder == cache.folder(handle)
    manifest = json.loads((first.folder / MANIFEST).read_text())
    assert manifest["version"] == handle.key and len(manifest["sha256"]) == 64
    assert manifest["parts"]["pooling"] == name
    again = cache.load(handle)
    assert not again.built and again.folder == first.folder
    _check_same(again.classifier.classify(TEXTS, LABELS, 32), handle)
    # another version (other weights) gets its own folder
    assert cache.folder(runs["other"]) != first.folder


def _garble_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda f: (f / ONNX_FILE).write_bytes((f / ONNX_FILE).read_bytes()[:500]),
            id="truncated-onnx",
        ),
        pytest.param(lambda f: _garble_middle(f / ONNX_FILE), id="garbled-onnx"),
        pytest.param(lambda f: (f / MANIFEST).write_text("{not json"), id="garbled-manifest"),
    ],
)
def test_a_damaged_cache_is_rebuilt_not_served(
    runs: dict[str, ModelHandle], tmp_path: Path, damage: object
) -> None:
    handle = runs["cls"]
    cache = OnnxCache(tmp_path / "cache", threads=1)
    folder = cache.load(handle).folder
    damage(folder)  # type: ignore[operator]
    rebuilt = cache.load(handle)
    assert rebuilt.built and rebuilt.folder == folder
    _check_same(rebuilt.classifier.classify(TEXTS, LABELS, 32), handle)
    assert not cache.load(handle).built  # and the rebuilt folder is good again
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".locks", folder.name]


@pytest.mark.slow
def test_a_manifest_that_lies_is_caught_by_the_reference_answers(
    runs: dict[str, ModelHandle], tmp_path: Path
) -> None:
    """A model.onnx swapped for another version's file, with a manifest whose checksum was
    updated to match: the PyTorch answers recorded at export catch it."""
    cache = OnnxCache(tmp_path / "cache", threads=1)
    mine = cache.load(runs["cls"]).folder
    theirs = cache.load(runs["other"]).folder
    (mine / ONNX_FILE).write_bytes((theirs / ONNX_FILE).read_bytes())
    manifest = json.loads((mine / MANIFEST).read_text())
    other = json.loads((theirs / MANIFEST).read_text())
    manifest.update(size=other["size"], sha256=other["sha256"])
    (mine / MANIFEST).write_text(json.dumps(manifest))
    assert cache.load(runs["cls"]).built


def test_export_failure_leaves_the_version_on_pytorch(
    runs: dict[str, ModelHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> Path:
        raise OnnxExportError("tracing failed (test)")

    monkeypatch.setattr(cache_mod, "export_onnx", broken)
    cache = OnnxCache(tmp_path / "cache", threads=1)
    with pytest.raises(OnnxUnavailable, match="tracing failed"):
        cache.load(runs["cls"])
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".locks"]  # nothing half-made
    pool = ModelPool(cache_size=2, device="cpu", precision="fp32", onnx=cache)
    pool.merge(runs["cls"])
    assert pool.backend(runs["cls"].key) == "pytorch"
    assert pool.onnx_note is not None and "tracing failed" in pool.onnx_note
    _check_same(pool.predict(runs["cls"], TEXTS), runs["cls"])


def test_the_pool_serves_the_hot_model_on_onnx(
    runs: dict[str, ModelHandle], tmp_path: Path
) -> None:
    pool = ModelPool(cache_size=2, device="cpu", precision="fp32", onnx=OnnxCache(tmp_path))
    pool.merge(runs["mean"])
    assert pool.backend(runs["mean"].key) == "onnx" and pool.onnx_note is None
    _check_same(pool.predict(runs["mean"], TEXTS), runs["mean"])
    # a version that is not hot runs as an adapter on PyTorch
    assert pool.backend(runs["cls"].key) is None
    _check_same(pool.predict(runs["cls"], TEXTS), runs["cls"])


def test_an_unusable_cache_folder_leaves_the_version_on_pytorch(
    runs: dict[str, ModelHandle], tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    pool = ModelPool(cache_size=2, device="cpu", precision="fp32", onnx=OnnxCache(blocked))
    pool.merge(runs["cls"])
    assert pool.backend(runs["cls"].key) == "pytorch"
    assert pool.onnx_note is not None and "ONNX cache" in pool.onnx_note
    _check_same(pool.predict(runs["cls"], TEXTS), runs["cls"])
