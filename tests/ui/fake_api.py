"""A fake platform API over httpx.MockTransport: canned answers shaped like the real routes',
a record of what the UI sent, and switches for the failures pages must put in words."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

TOKEN = "fake-token"  # noqa: S105 - a test value
# a 1x1 PNG, base64
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
    "AAAABJRU5ErkJggg=="
)

JOB = {
    "task_id": "job-1",
    "owner": "alice",
    "state": "training",
    "steps": [
        {"name": "queued", "status": "done"},
        {"name": "validating", "status": "done"},
        {"name": "training", "status": "current"},
        {"name": "evaluating", "status": "pending"},
        {"name": "registering", "status": "pending"},
        {"name": "succeeded", "status": "pending"},
    ],
    "progress": {"epoch": 0.5, "step": 5, "total_steps": 10, "percent": 50.0, "loss": 0.6},
    "error": None,
    "cancel_requested": False,
    "experiment": "demo",
    "base_model": "all-MiniLM-L6-v2",
    "model_name": "demo",
    "run_id": "20260101-000000-aaaaaa",
    "mlflow_run_id": "a" * 32,
    "model_version": None,
    "queue": "cpu",
    "attempts": 1,
    "created_at": "2026-01-01T00:00:00+00:00",
    "started_at": "2026-01-01T00:00:05+00:00",
    "finished_at": None,
    "queue_position": None,
}
DATASET = {
    "name": "reviews",
    "version": "v1",
    "ref": "reviews@v1",
    "fingerprint": "f" * 64,
    "rows": 40,
    "label_counts": {"negative": 20, "positive": 20},
    "registered_by": "alice",
    "registered_at": 1.7e9,
    "text_column": "text",
    "label_column": "label",
    "report": {"errors": [], "warnings": ["3 duplicate texts"]},
    "owner": "alice",
}
CARD = {
    "name": "demo",
    "version": "v1",
    "ref": "demo@v1",
    "run_id": "20260101-000000-aaaaaa",
    "base_model": "all-MiniLM-L6-v2",
    "language": "English",
    "task": "sentiment",
    "description": "movie reviews",
    "labels": ["negative", "positive"],
    "metrics": {"accuracy": 0.91, "macro_f1": 0.9},
    "tags": {},
    "dataset": {"name": "reviews", "version": "v1", "fingerprint": "f" * 64},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None},
    "training": {},
    "created_by": "alice",
    "created_at": 1.7e9,
    "stage": "None",
}
TRAIN_SCHEMA = {
    "components": {
        "schemas": {
            "TrainRequest": {
                "properties": {
                    "experiment": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "base_model": {"anyOf": [{"type": "string"}, {"type": "null"}],
                                   "description": "A catalog name"},
                    "epochs": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                    "lora_r": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                    "device": {"anyOf": [{"enum": ["auto", "cpu"], "type": "string"},
                                         {"type": "null"}]},
                }
            }
        }
    }
}  # fmt: skip


def run_details(run_id: str, lr: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "experiment_id": "1",
        "run_name": f"run-{run_id[:4]}",
        "status": "FINISHED",
        "start_time": 0,
        "end_time": 1,
        "params": {"learning_rate": lr, "lora_r": "8"},
        "metrics": {"accuracy": 0.9},
        "tags": {},
        "artifacts": [],
        "task_id": "job-1",
    }


@dataclass
class FakeApi:
    """Routes by (method, path); ``down`` drops every connection, ``expired`` answers 401."""

    role: str = "user"
    down: bool = False
    expired: bool = False
    job: dict[str, Any] = field(default_factory=lambda: dict(JOB))
    refuse_train: tuple[int, Any] | None = None
    chain_ok: bool = True
    sent: list[tuple[str, str, Any]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = request.content.decode("utf-8", errors="replace")
        self.sent.append((request.method, request.url.path, body))
        key = (request.method, request.url.path)
        if key == ("POST", "/login"):
            credentials = json.loads(body)
            if credentials["password"] != "right":
                return httpx.Response(401, json={"detail": "wrong username or password"})
            user = {"username": credentials["username"], "role": self.role}
            return httpx.Response(200, json={"access_token": TOKEN, "user": user})
        if request.headers.get("authorization") != f"Bearer {TOKEN}" or self.expired:
            return httpx.Response(401, json={"detail": "token expired"})
        return self.answer(request, key, body)

    def answer(self, request: httpx.Request, key: tuple[str, str], body: str) -> httpx.Response:
        method, path = key
        answers: dict[tuple[str, str], Any] = {
            ("GET", "/openapi.json"): TRAIN_SCHEMA,
            ("GET", "/datasets"): [DATASET],
            ("GET", "/datasets/reviews@v1"): DATASET,
            ("GET", "/tasks"): [self.job, {**self.job, "task_id": "job-2", "state": "succeeded",
                                 "run_id": "20260101-000000-bbbbbb", "mlflow_run_id": "b" * 32,
                                 "finished_at": "2026-01-01T00:10:05+00:00"}],
            ("GET", "/task/job-1"): self.job,
            ("GET", "/task/job-1/metrics"): {
                "task_id": "job-1",
                "state": self.job["state"],
                "series": {
                    "train_loss": [{"step": 1, "value": 0.9}, {"step": 2, "value": 0.7}],
                    "val_accuracy": [{"step": 2, "value": 0.8}],
                },
            },
            ("GET", "/task/job-1/logs"): {
                "task_id": "job-1", "state": self.job["state"],
                "lines": ["step 1 loss=0.9", "step 2 loss=0.7"], "truncated": False,
            },
            ("POST", "/task/job-1/cancel"): {**self.job, "cancel_requested": True},
            ("GET", "/experiments"): [
                {"experiment": "demo", "run_id": "20260101-000000-aaaaaa", "status": "succeeded",
                 "base_model": "m", "accuracy": 0.9, "macro_f1": 0.9, "started": "", "path": None},
            ],
            ("GET", "/mlflow"): {"tracking_uri": "sqlite:", "ui": "http://127.0.0.1:5000"},
            ("GET", "/models/search"): {"items": [CARD], "total": 1, "offset": 0, "limit": 100},
            ("POST", "/models/recommend"): {
                "results": [{"model": CARD, "score": 0.87, "reasons": ["same language"]}],
                "starting_point": None,
            },
            ("POST", "/models/transition"): {"model": CARD, "from": "None", "to": "Production",
                                             "archived": []},
            ("POST", "/predict/batch"): {
                "predictions": [
                    {"label": 1, "label_name": "positive", "probability": 0.97, "latency_ms": 3.0,
                     "base_model": "m", "language": "English", "model_version": "demo@v1"},
                    {"label": 0, "label_name": "negative", "probability": 0.55, "latency_ms": 3.0,
                     "base_model": "m", "language": "English", "model_version": "demo@v1"},
                ],
                "latency_ms": 6.0, "count": 2,
            },
            ("GET", "/catalog"): {
                "items": [
                    {"name": "minilm-l6", "hub_id": "x/minilm", "language": "English",
                     "description": "default", "offline": True},
                    {"name": "tiny-bert", "hub_id": None, "language": None,
                     "description": "a local model folder", "offline": True},
                ],
                "default": "minilm-l6",
            },
            ("POST", "/train/estimate"): {"rows": 40, "train_rows": 36, "batch_size": 32,
                                          "epochs": 3.0, "steps_per_epoch": 2, "steps": 6},
            ("GET", "/datasets/reviews@v1/diff"): {
                "old": "reviews@v1", "new": "reviews@v1", "added": 1, "removed": 2,
                "relabelled": 3, "unchanged": 34,
                "changes": [{"kind": "added", "text": "new row", "row_old": None, "row_new": 40,
                             "label_old": None, "label_new": "positive"}],
            },
            ("GET", "/datasets/reviews@v1/plots"): {"ref": "reviews@v1", "plots": {
                "label_distribution": PNG}},
            ("GET", "/models/demo@v1/history"): {"model": "demo", "changes": [
                {"version": "v1", "from_stage": None, "to_stage": "None", "by": "alice",
                 "at": 1.7e9, "reason": ""},
                {"version": "v1", "from_stage": "None", "to_stage": "Staging", "by": "root",
                 "at": 1.7e9 + 60, "reason": "looks good"}]},
            ("GET", "/audit/verify"): {"ok": self.chain_ok, "checked": 12,
                                       "first_bad_id": None if self.chain_ok else 7,
                                       "problem": None if self.chain_ok else "hash mismatch"},
            ("GET", "/task/job-1/report"): {
                "task_id": "job-1", "labels": ["negative", "positive"],
                "per_class": {"negative": {"precision": 0.9, "recall": 0.8, "f1": 0.85,
                                           "support": 10},
                              "positive": {"precision": 0.8, "recall": 0.9, "f1": 0.85,
                                           "support": 10}},
                "confusion_matrix_png": PNG,
            },
            ("GET", "/health"): {"status": "ok"},
            ("GET", "/audit/logs"): {
                "items": [{"id": 1, "at": "2026-01-01T00:00:00+00:00", "username": "root",
                           "role": "admin", "action": "login", "target": None,
                           "outcome": "allowed", "client": "127.0.0.1", "request_id": None,
                           "detail": {}, "prev_hash": "0", "hash": "1"}],
                "total": 1, "offset": 0, "limit": 200,
            },
        }  # fmt: skip
        if path.endswith("/diff") and request.url.params.get("base") != "reviews@v1":
            base = request.url.params.get("base")
            return httpx.Response(404, json={"detail": f"no dataset version {base!r}"})
        if key == ("POST", "/train") and self.refuse_train:
            status, detail = self.refuse_train
            return httpx.Response(status, json={"detail": detail})
        if key == ("POST", "/train"):
            return httpx.Response(202, json={**self.job, "state": "queued", "queue_position": 2})
        if key == ("GET", "/experiments/mlflow/" + "a" * 32):
            return httpx.Response(200, json=run_details("a" * 32, "0.0002"))
        if key == ("GET", "/experiments/mlflow/" + "b" * 32):
            return httpx.Response(200, json=run_details("b" * 32, "0.001"))
        if key == ("POST", "/datasets"):
            return httpx.Response(201, json={**DATASET, "created": True, "warnings": 1})
        if key in answers:
            return httpx.Response(200, json=answers[key])
        if path.startswith("/task/"):
            return httpx.Response(404, json={"detail": f"no job {path.split('/')[2]}"})
        return httpx.Response(404, json={"detail": f"no route {method} {path}"})
