"""The prediction service's public surfaces: anonymous ``/health`` names no model, version or
device; ``/health/details`` and ``/metrics`` answer monitoring clients only (the
``observability.metrics_token`` bearer token when one is set, a loopback peer when not)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loralab.entrypoints.api.serving_app import create_serving_app
from loralab.settings import ObservabilitySettings, RegistrySettings, Settings, StorageSettings

LOCAL = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.9", 50000)
TOKEN = "a-monitoring-token-0123456789"


def _settings(tmp: Path, token: str | None) -> Settings:
    return Settings(
        storage=StorageSettings(results_dir=tmp / "results"),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        observability=ObservabilitySettings(metrics_token=token),  # type: ignore[arg-type]
    )


def test_anonymous_health_is_minimal(tmp_path: Path) -> None:
    with TestClient(create_serving_app(_settings(tmp_path, None)), client=REMOTE) as client:
        answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "no model loaded", "model_loaded": False}


@pytest.mark.parametrize("path", ["/health/details", "/metrics"])
def test_without_a_token_only_loopback_peers_read_monitoring_routes(
    tmp_path: Path, path: str
) -> None:
    app = create_serving_app(_settings(tmp_path, None))
    with TestClient(app, client=REMOTE) as remote, TestClient(app, client=LOCAL) as local:
        refused = remote.get(path)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
        assert local.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/health/details", "/metrics"])
def test_with_a_token_only_its_holders_read_monitoring_routes(tmp_path: Path, path: str) -> None:
    app = create_serving_app(_settings(tmp_path, TOKEN))
    with TestClient(app, client=LOCAL) as client:  # loopback is not enough then
        assert client.get(path).status_code == 403
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        answer = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
    if path == "/health/details":
        assert {"model_version", "device", "loaded"} <= set(answer.json())
