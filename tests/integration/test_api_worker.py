"""The platform end to end over HTTP: a real uvicorn API (create_app on SQLite), a private
redis-server and a real Celery worker process training a tiny BERT.

A user signs in, uploads a dataset, queues a job and watches it train to a registered model;
the run is theirs to read and nobody else's; the model answers predictions; an admin promotes
it; and the audit chain still verifies from the CLI.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.services import (
    BIN,
    RedisServer,
    kill_group,
    platform_settings,
    serve_in_process,
    settings_env,
    start_worker,
    wait_for_heartbeat,
)

from loralab.entrypoints.api.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "an-end-to-end-signing-secret-that-is-long-enough-0123"
PASSWORD = "correct horse battery"
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Live:
    url: str
    tmp: Path
    env: dict[str, str]

    def logs(self) -> str:
        return (self.tmp / "worker.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("api-worker")
    redis = RedisServer(tmp / "redis")
    redis.start()
    settings = platform_settings(tmp, broker_url=redis.url, models=tiny_bert.parent, secret=SECRET)
    app = create_app(settings)  # migrates the database
    users = app.state.services.users
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        users.create_user(name, PASSWORD, role)
    env = settings_env(settings)
    worker = start_worker(env, tmp, tmp / "worker.log")
    try:
        wait_for_heartbeat(env)
        with serve_in_process(app) as url:
            yield Live(url, tmp, env)
    finally:
        kill_group(worker)
        redis.kill()


def sign_in(client: httpx.Client, name: str) -> dict[str, str]:
    response = client.post("/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def upload(client: httpx.Client, who: dict[str, str]) -> str:
    from tests.conftest import make_rows

    rows = "".join(f"{text},{label}\n" for text, label in make_rows(120))
    made = client.post(
        "/datasets",
        data={"name": "reviews"},
        files={"file": ("reviews.csv", ("text,label\n" + rows).encode(), "text/csv")},
        headers=who,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["ref"])


def watch(client: httpx.Client, who: dict[str, str], task: str, live: Live) -> list[dict[str, Any]]:
    """Every distinct view of the task until it ends (polled 10 times a second)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        view = client.get(f"/task/{task}", headers=who).json()
        if not seen or (view["state"], view["progress"]) != (
            seen[-1]["state"],
            seen[-1]["progress"],
        ):
            seen.append(view)
        if view["state"] in TERMINAL:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the job did not finish: {seen[-1:]}\n{live.logs()}")


def test_sign_in_upload_train_watch_read_predict_promote_and_verify(live: Live) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        alice, bob, root = (sign_in(client, n) for n in ("alice", "bob", "root"))
        ref = upload(client, alice)
        job = {
            "train_file": ref,
            "base_model": "tiny-bert",
            "experiment": "e2e",
            "model_name": "e2e",
            "max_steps": 80,
            "eval_steps": 20,
            "batch_size": 8,
            "learning_rate": 0.02,
            "validation_split": 0.2,
            "early_stopping_patience": 0,
        }
        queued = client.post("/train", json=job, headers=alice)
        assert queued.status_code == 202, queued.text
        task = queued.json()["task_id"]
        assert queued.json()["state"] == "queued"

        seen = watch(client, alice, task, live)
        done = seen[-1]
        assert done["state"] == "succeeded", (done, live.logs())
        states = [v["state"] for v in seen]
        assert "training" in states and states.index("training") < states.index("succeeded")
        midway = [v["progress"] for v in seen if v["state"] == "training" and v["progress"]["step"]]
        assert midway and all(p["loss"] is not None for p in midway), seen
        assert any(0 < (p["percent"] or 0) < 100 for p in midway), midway
        assert done["progress"]["percent"] == 100.0 and done["attempts"] == 1
        assert all(step["status"] == "done" for step in done["steps"])
        assert done["model_version"] == "e2e@1" and done["mlflow_run_id"]

        run = f"/experiments/mlflow/{done['mlflow_run_id']}"
        details = client.get(run, headers=alice)
        assert details.status_code == 200, details.text
        body = details.json()
        assert body["params"] and body["metrics"] and body["artifacts"], body
        assert body["task_id"] == task
        assert client.get(run, headers=bob).status_code == 404
        assert client.get(f"/task/{task}", headers=bob).status_code == 404

        predicted = client.post(
            "/predict", json={"text": "the movie was great great", "model": "e2e@1"}, headers=bob
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["model_version"] == "e2e@1"
        assert predicted.json()["label_name"] in {"positive", "negative"}

        move = {"model": "e2e@1", "stage": "Production", "reason": "end-to-end test"}
        assert client.post("/models/transition", json=move, headers=bob).status_code == 403
        moved = client.post("/models/transition", json=move, headers=root)
        assert moved.status_code == 200, moved.text
        assert moved.json()["to"] == "Production"
        audit = client.get("/audit/logs?limit=500", headers=root).json()["items"]
        actions = {(r["action"], r["outcome"], r["username"]) for r in audit}
        assert ("job.submit", "allowed", "alice") in actions
        assert ("dataset.upload", "allowed", "alice") in actions
        assert ("model.transition", "allowed", "root") in actions

    verify = subprocess.run(
        [str(BIN / "loralab"), "audit", "verify"],
        env=live.env,
        cwd=live.tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit chain OK" in verify.stdout
