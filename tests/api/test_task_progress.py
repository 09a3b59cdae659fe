"""GET /task/{id}/metrics and GET /task/{id}/logs: read from what the worker writes (the run
folder and its MLflow run), owner or admin only, and the log never shows server paths or
secrets."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from sqlalchemy import update
from tests.api.conftest import SECRET, sign_in

from loralab.infra.db import Job
from loralab.infra.tracking import tracking_uri
from loralab.jobs.progress import scrub_line, tail_lines
from loralab.training.runs import RunPaths, update_state

JOB = {"train_file": "reviews@latest", "base_model": "tiny-bert", "max_steps": 2}
RUN_ID = "20260101-000000-abc123"


def _fake_run(found, task: str, log_text: str) -> RunPaths:
    """A run folder and MLflow run as a worker leaves them mid-training."""
    settings = found.settings
    run = RunPaths(settings.storage.results_dir / "demo" / RUN_ID)
    run.root.mkdir(parents=True)
    run.config.write_text("experiment: demo\n", encoding="utf-8")
    run.logs.write_text(log_text, encoding="utf-8")
    client = MlflowClient(tracking_uri(settings))
    experiment = client.create_experiment("demo")
    tracker = client.create_run(experiment).info.run_id
    metrics = [Metric("train_loss", 0.9 - step / 10, 0, step) for step in (2, 1, 3)]
    metrics.append(Metric("val_accuracy", 0.75, 0, 3))
    client.log_batch(tracker, metrics=metrics)
    update_state(run, status="running", tracker_run_id=tracker)
    with found.db.session() as session:
        session.execute(update(Job).where(Job.id == task).values(run_id=RUN_ID, state="training"))
    return run


def test_a_queued_job_has_no_metrics_and_no_log_yet(platform) -> None:
    client, _, _ = platform
    alice = sign_in(client, "alice")
    task = client.post("/train", json=JOB, headers=alice).json()["task_id"]
    metrics = client.get(f"/task/{task}/metrics", headers=alice)
    assert metrics.status_code == 200
    assert metrics.json() == {"task_id": task, "state": "queued", "series": {}}
    logs = client.get(f"/task/{task}/logs", headers=alice).json()
    assert logs == {"task_id": task, "state": "queued", "lines": [], "truncated": False}


def test_metric_history_is_ordered_by_step_while_the_job_trains(platform) -> None:
    client, found, _ = platform
    alice = sign_in(client, "alice")
    task = client.post("/train", json=JOB, headers=alice).json()["task_id"]
    _fake_run(found, task, "started\n")
    body = client.get(f"/task/{task}/metrics", headers=alice).json()
    assert body["state"] == "training"
    assert [p["step"] for p in body["series"]["train_loss"]] == [1, 2, 3]
    assert body["series"]["train_loss"][0]["value"] == 0.8
    assert body["series"]["val_accuracy"] == [{"step": 3, "value": 0.75}]
    assert "learning_rate" not in body["series"]
    root = sign_in(client, "root")
    assert client.get(f"/task/{task}/metrics", headers=root).status_code == 200
    bob = sign_in(client, "bob")
    assert client.get(f"/task/{task}/metrics", headers=bob).status_code == 404
    assert client.get(f"/task/{task}/logs", headers=bob).status_code == 404


def test_the_log_tail_hides_server_paths_and_secrets(platform) -> None:
    client, found, _ = platform
    alice = sign_in(client, "alice")
    task = client.post("/train", json=JOB, headers=alice).json()["task_id"]
    results = found.settings.storage.results_dir.resolve()
    text = "".join(f"line {n}\n" for n in range(50))
    text += f"saved to {results}/demo/{RUN_ID}/artifacts\n"
    text += f"cwd {Path.cwd()}/x db postgresql://bob:hunter2@db:5432/x key {SECRET}\n"
    text += "password=swordfish Authorization: Bearer abcdefghijklmnop\n"
    _fake_run(found, task, text)
    body = client.get(f"/task/{task}/logs?tail=3", headers=alice).json()
    assert body["truncated"] is True
    assert body["lines"][0] == f"saved to <results>/demo/{RUN_ID}/artifacts"
    joined = "\n".join(body["lines"])
    for leaked in (str(results), str(Path.cwd()), "hunter2", SECRET, "swordfish", "abcdefghij"):
        assert leaked not in joined
    assert "<cwd>/x" in joined and "://***@db:5432" in joined
    full = client.get(f"/task/{task}/logs?tail=1000", headers=alice).json()
    assert full["lines"][0] == "line 0" and full["truncated"] is False
    assert client.get(f"/task/{task}/logs?tail=0", headers=alice).status_code == 422


def test_tail_reads_the_last_lines_of_a_long_file(tmp_path: Path) -> None:
    path = tmp_path / "logs.txt"
    path.write_text("".join(f"{n:06d}\n" for n in range(100_000)), encoding="utf-8")
    lines, truncated = tail_lines(path, 2)
    assert lines == ["099998", "099999"] and truncated
    assert tail_lines(tmp_path / "missing.txt", 5) == ([], False)


def test_scrub_keeps_ordinary_text() -> None:
    assert scrub_line("step 3 loss=0.41 lr=2e-05", []) == "step 3 loss=0.41 lr=2e-05"
    assert scrub_line("token: abc", []) == "token: ***"
