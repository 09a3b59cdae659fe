"""Monitoring end to end: a real API, Celery worker and prediction service, scraped by a real
Prometheus server (Debian's binary) with the shipped scrape config and alert rules.

After one job succeeds and one fails (its base model has NaN weights: reason ``nan``),
Prometheus's HTTP API answers task_success_total = 1, task_failure_total = 1 and a
task_queue_length series per queue; and every metric name the dashboard and the alerts use is
exported by one of the three processes.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.conftest import build_tiny_bert, make_rows
from tests.helpers.monitoring import (
    PROMETHEUS_DIR,
    alert_exprs,
    dashboard,
    dashboard_exprs,
    exported_names,
    metric_names,
)
from tests.integration.services import (
    BIN,
    RedisServer,
    free_port,
    kill_group,
    platform_settings,
    serve_in_process,
    settings_env,
    start_worker,
    wait_for,
    wait_for_heartbeat,
)

from loralab.entrypoints.api.app import create_app
from loralab.observability.logs import configure_logging
from loralab.settings import LogSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "a-monitoring-end-to-end-signing-secret-long-enough-0123"
PASSWORD = "monitoring horse battery"
TERMINAL = {"succeeded", "failed", "cancelled"}
ONLY_WITH_A_GPU = {"loralab_gpu_memory_used_bytes"}
MADE_BY_PROMETHEUS = {"up"}


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    api: str
    worker_port: int
    worker: subprocess.Popen[bytes]

    def logs(self) -> str:
        return (self.tmp / "worker.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("monitoring")
    models = tmp / "models"
    build_tiny_bert(models / "tiny-bert")
    build_tiny_bert(models / "nan-bert", nan_weights=True)
    redis = RedisServer(tmp / "redis")
    redis.start()
    settings = platform_settings(tmp, broker_url=redis.url, models=models, secret=SECRET)
    app = create_app(settings)
    app.state.services.users.create_user("alice", PASSWORD, "user")
    worker_port = free_port()
    env = settings_env(
        settings,
        LORALAB_OBSERVABILITY__WORKER_METRICS_PORT=str(worker_port),
        LORALAB_LOG__FORMAT="json",
    )
    api_log = (tmp / "api.log").open("w")
    handler = configure_logging(
        settings.model_copy(update={"log": LogSettings(format="json")}), "api", api_log
    )
    worker = start_worker(env, tmp, tmp / "worker.log")
    try:
        wait_for_heartbeat(env)
        with serve_in_process(app) as url:
            yield Stack(tmp, env, url, worker_port, worker)
    finally:
        kill_group(worker)
        redis.kill()
        logging.getLogger().removeHandler(handler)
        api_log.close()


def train(client: httpx.Client, who: dict[str, str], ref: str, base: str, stack: Stack) -> str:
    job = {
        "train_file": ref,
        "base_model": base,
        "experiment": "monitoring",
        "model_name": "monitoring",
        "max_steps": 10,
        "eval_steps": 5,
        "batch_size": 8,
        "validation_split": 0.2,
        "early_stopping_patience": 0,
    }
    queued = client.post("/train", json=job, headers=who)
    assert queued.status_code == 202, queued.text
    task = queued.json()["task_id"]

    def ended() -> str | None:
        state = str(client.get(f"/task/{task}", headers=who).json()["state"])
        return state if state in TERMINAL else None

    try:
        return str(wait_for(ended, 120, f"job {base} to end", every=0.5))
    except AssertionError as err:
        raise AssertionError(f"{err}\n{stack.logs()}") from None


@pytest.fixture(scope="module")
def finished(stack: Stack) -> dict[str, str]:
    """One job succeeded and one failed; the outcomes by base model."""
    with httpx.Client(base_url=stack.api, timeout=30) as client:
        login = client.post("/login", json={"username": "alice", "password": PASSWORD})
        who = {"Authorization": f"Bearer {login.json()['access_token']}"}
        rows = "".join(f"{text},{label}\n" for text, label in make_rows(60))
        made = client.post(
            "/datasets",
            data={"name": "reviews"},
            files={"file": ("r.csv", ("text,label\n" + rows).encode(), "text/csv")},
            headers=who,
        )
        assert made.status_code == 201, made.text
        ref = str(made.json()["ref"])
        return {base: train(client, who, ref, base, stack) for base in ("tiny-bert", "nan-bert")}


@pytest.fixture(scope="module")
def serving(stack: Stack, finished: dict[str, str]) -> Iterator[str]:
    """``loralab serve`` of the trained model, after one prediction and one refusal."""
    port = free_port()
    args = ["serve", "--model", "monitoring@1", "--port", str(port)]
    log = (stack.tmp / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "loralab"), *args],
        env=stack.env,
        cwd=stack.tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/health"), 90, "the prediction service", every=0.5)
        predicted = httpx.post(f"{url}/predict", json={"text": "great great movie"}, timeout=30)
        assert predicted.status_code == 200, predicted.text
        refused = httpx.post(f"{url}/predict", json={"text": ""}, timeout=30)
        assert refused.status_code >= 400  # counted in loralab_predict_errors_total
        yield url
    finally:
        kill_group(process)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_jobs_end_as_expected(finished: dict[str, str]) -> None:
    assert finished == {"tiny-bert": "succeeded", "nan-bert": "failed"}


def test_every_metric_the_dashboard_and_alerts_use_is_exported(stack: Stack, serving: str) -> None:
    exported: set[str] = set()
    for url in (f"{stack.api}/metrics", f"{serving}/metrics", _worker_url(stack)):
        body = httpx.get(url, timeout=10)
        assert body.status_code == 200, url
        exported |= exported_names(body.text)
    used = metric_names(dashboard_exprs(dashboard()) + alert_exprs())
    missing = used - exported - ONLY_WITH_A_GPU - MADE_BY_PROMETHEUS
    assert not missing, sorted(missing)


def _worker_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.worker_port}/metrics"


def test_a_real_prometheus_scrapes_the_job_outcomes(
    stack: Stack, finished: dict[str, str], serving: str, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus; .ci/run does it)")
    targets = {
        "loralab-api": stack.api,
        "loralab-predict": serving,
        "loralab-worker": f"http://127.0.0.1:{stack.worker_port}",
    }
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    (tmp_path / "metrics_token").write_text("a-token\n")  # this API takes loopback peers
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]].split("//")[1]]}]
        if "authorization" in job:  # the shipped file reads start-services' token
            job["authorization"]["credentials_file"] = str(tmp_path / "metrics_token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(tmp_path / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/-/ready"), 30, "prometheus", 0.2)
        up = wait_for(lambda: _all_up(api, 3), 30, "all three targets up", every=0.5)
        assert up == {"loralab-api", "loralab-predict", "loralab-worker"}
        assert _value(api, "sum(task_success_total)") == 1
        assert _value(api, "sum(task_failure_total)") == 1
        assert _value(api, 'task_failure_total{queue="cpu", reason="nan"}') == 1
        queues = _query(api, "task_queue_length")
        assert sorted(r["metric"]["queue"] for r in queues) == ["cpu", "cuda", "mps"]
        assert _value(api, 'sum(task_duration_seconds_count{queue="cpu"})') == 2
        rules = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"][0]["rules"]
        assert all(rule["health"] == "ok" for rule in rules), rules
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_group(process)


def _query(api: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{api}/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _value(api: str, expr: str) -> float:
    """The single value of ``expr`` once Prometheus has it (waits for a scrape)."""
    result = wait_for(lambda: _query(api, expr), 20, f"{expr} in prometheus", every=0.5)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _all_up(api: str, count: int) -> set[str] | None:
    result = _query(api, "up == 1")
    jobs = {r["metric"]["job"] for r in result}
    return jobs if len(jobs) == count else None


def test_logs_are_json_lines_with_context_and_never_a_secret(
    stack: Stack, finished: dict[str, str], serving: str
) -> None:
    logs = {name: (stack.tmp / f"{name}.log").read_text() for name in ("api", "worker", "serve")}
    for name, text in logs.items():
        assert SECRET not in text and PASSWORD not in text, name
    records = {name: _json_lines(text) for name, text in logs.items()}
    worker = [r for r in records["worker"] if r.get("logger", "").startswith("loralab")]
    assert worker and all(r["service"] == "worker" for r in worker)
    ended = [r for r in worker if r["job_id"] and " succeeded" in r["message"]]
    assert ended and ended[0]["attempt"] == 1, worker[-5:]
    assert any(r["request_id"] for r in records["api"]), records["api"][-5:]
    assert any(r["logger"] == "uvicorn.error" for r in records["serve"])  # uvicorn's lines too
    assert all(r["service"] == "serve" for r in records["serve"])


def _json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines (Celery's start-up banner and tracebacks are not records)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found
