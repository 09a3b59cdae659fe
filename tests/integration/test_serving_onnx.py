"""The prediction service (merged mode) answers from ONNX Runtime exactly as PyTorch would;
a corrupt cache is rebuilt at start, never served; ``serving.onnx=false`` and a failing export
both serve through PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.unit.serving.test_onnx_cache import make_run

from loralab.entrypoints.api.serving_app import create_serving_app
from loralab.serving import onnx_cache as cache_mod
from loralab.serving.onnx_cache import MANIFEST
from loralab.settings import RegistrySettings, ServingSettings, Settings, StorageSettings
from loralab.training.inference import load_predictor
from loralab.training.onnx_export import ONNX_FILE, OnnxExportError
from loralab.training.runs import RunPaths

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["good good film", "bad bad film", "ok"]
LOCAL = ("127.0.0.1", 50000)  # a loopback peer: /health/details answers it


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> RunPaths:
    return make_run(tmp_path_factory.mktemp("results"), tiny_bert, "20261201-000000-0nnx00")


def _settings(run: RunPaths, cache: Path, **serving: object) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=run.root.parents[1]),
        registry=RegistrySettings(card_dir=cache.parent / "cards"),
        serving=ServingSettings(  # type: ignore[arg-type]
            mode="merged", precision="fp32", onnx_cache_dir=cache, **serving
        ),
    )


def _serve(settings: Settings, run: RunPaths) -> tuple[str | None, list[dict]]:
    """Start the app, classify TEXTS one by one and as a batch; (backend, answers)."""
    app = create_serving_app(settings, model=run.run_id)
    with TestClient(app, client=LOCAL) as client:
        singles = [client.post("/predict", json={"text": t}).json() for t in TEXTS]
        batch = client.post("/predict/batch", json={"texts": TEXTS}).json()["predictions"]
        service = app.state.predictions
        backend = service.pool.backend(service.default.key)
        assert client.get("/health/details").json()["loaded"] == [f"{service.default.key} (merged)"]
    assert [a["label_name"] for a in singles] == [a["label_name"] for a in batch]
    return backend, singles


def _expected(run: RunPaths) -> list[tuple[str, float]]:
    predictor = load_predictor(run, device="cpu", precision="fp32")
    return [(p.label_name, p.probability) for p in predictor.predict(TEXTS)]


def _assert_matches(answers: list[dict], run: RunPaths) -> None:
    want = _expected(run)
    assert [a["label_name"] for a in answers] == [w[0] for w in want]
    assert max(abs(a["probability"] - w[1]) for a, w in zip(answers, want, strict=True)) < 1e-4


def test_onnx_serves_then_a_corrupt_cache_is_rebuilt(run: RunPaths, tmp_path: Path) -> None:
    cache = tmp_path / "onnx-cache"
    backend, answers = _serve(_settings(run, cache), run)
    assert backend == "onnx"
    _assert_matches(answers, run)
    [folder] = [p for p in cache.iterdir() if not p.name.startswith(".")]
    built_at = (folder / MANIFEST).stat().st_mtime_ns
    # a second start reads the cache (no new export) ...
    assert _serve(_settings(run, cache), run)[0] == "onnx"
    assert (folder / MANIFEST).stat().st_mtime_ns == built_at
    # ... and a garbled file is detected at start, rebuilt, and the answers stay right
    data = bytearray((folder / ONNX_FILE).read_bytes())
    data[len(data) // 2 : len(data) // 2 + 256] = bytes(256)
    (folder / ONNX_FILE).write_bytes(bytes(data))
    backend, answers = _serve(_settings(run, cache), run)
    assert backend == "onnx"
    _assert_matches(answers, run)
    assert (folder / MANIFEST).stat().st_mtime_ns != built_at


def test_onnx_off_and_failed_export_serve_through_pytorch(
    run: RunPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "onnx-cache"
    backend, answers = _serve(_settings(run, cache, onnx=False), run)
    assert backend == "pytorch" and not cache.exists()
    _assert_matches(answers, run)

    def broken(*_args: object, **_kwargs: object) -> Path:
        raise OnnxExportError("tracing failed (test)")

    monkeypatch.setattr(cache_mod, "export_onnx", broken)
    backend, answers = _serve(_settings(run, cache), run)
    assert backend == "pytorch"
    _assert_matches(answers, run)
