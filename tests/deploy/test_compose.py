"""deploy/compose/compose.yaml: `docker compose config` (no engine needed) accepts it, and the
stack has what the issue asks: every service a healthcheck, secrets only from the env file,
one results volume shared by the processes that read and write models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.deploy.tools import COMPOSE, ROOT, run, tool

EXAMPLE = ROOT / "deploy" / "compose" / "env.example"
SECRETS = ("LORALAB_AUTH__SECRET_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("COMPOSE")}


def config(env_file: Path, *extra: str, check: bool = True) -> str:
    compose = tool("docker-compose")
    args = [compose, "-f", str(COMPOSE), "--env-file", str(env_file), *extra, "config"]
    return run(*args, "--format", "json", check=check, env=clean_env())


@pytest.fixture(scope="module")
def stack() -> dict:
    return json.loads(config(EXAMPLE, "--profile", "gpu"))


def test_config_is_clean() -> None:
    compose = tool("docker-compose")
    run(compose, "-f", str(COMPOSE), "--env-file", str(EXAMPLE), "config", "-q", env=clean_env())


def test_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    compose = tool("docker-compose")
    import subprocess

    done = subprocess.run(
        [compose, "-f", str(COMPOSE), "--env-file", str(empty), "config", "-q"],
        capture_output=True, text=True, env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode != 0
    assert "deploy/compose/.env" in done.stderr


def test_the_platform_services_are_there(stack: dict) -> None:
    expected = {"redis", "postgres", "mlflow", "migrate", "api", "worker", "worker-cuda", "serve"}
    expected |= {"ui", "prometheus", "grafana"}
    assert expected <= set(stack["services"])


def test_every_long_running_service_has_a_healthcheck(stack: dict) -> None:
    for name, service in stack["services"].items():
        if name == "migrate":
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_processes_share_one_results_volume(stack: dict) -> None:
    for name in ("api", "worker", "worker-cuda", "serve", "migrate"):
        mounts = {(v["source"], v["target"]) for v in stack["services"][name]["volumes"]}
        assert ("results", "/data") in mounts, name


def test_secrets_come_from_the_env_file_not_from_the_compose_file() -> None:
    text = COMPOSE.read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} must come from the env file, required"
    ignored = run("git", "check-ignore", "deploy/compose/.env")
    assert ignored.strip() == "deploy/compose/.env"


def test_the_cuda_worker_reserves_a_gpu(stack: dict) -> None:
    devices = stack["services"]["worker-cuda"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert "cuda" in stack["services"]["worker-cuda"]["command"]


def test_monitoring_files_are_mounted_and_exist(stack: dict) -> None:
    for name in ("prometheus", "grafana"):
        for volume in stack["services"][name]["volumes"]:
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
