"""A worker's own metrics: progress and throughput of the jobs it holds, heartbeat, endpoint."""

from __future__ import annotations

import socket
import threading
import urllib.request
import uuid

from prometheus_client import CollectorRegistry

from loralab.infra.db import Database, Job, User
from loralab.observability.worker import WorkerJobsCollector, serve_worker_metrics
from loralab.settings import Settings


def add_running(db: Database, worker: str, step: int, percent: float, queue: str = "cpu") -> str:
    job_id = str(uuid.uuid4())
    with db.session() as session:
        if session.get(User, 1) is None:
            session.add(User(id=1, username="alice", password_hash="x", role="user"))
    with db.session() as session:
        session.add(
            Job(
                id=job_id,
                owner_id=1,
                state="training",
                queue=queue,
                config={"batch_size": 16},
                progress={"step": step, "percent": percent},
                worker=worker,
            )
        )
    return job_id


def set_step(db: Database, job_id: str, step: int, percent: float) -> None:
    with db.session() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.progress = {"step": step, "percent": percent}


def test_progress_and_throughput_of_this_workers_jobs_only(sqlite_db_url: str) -> None:
    db = Database(sqlite_db_url)
    mine = add_running(db, "celery@a:123", step=10, percent=10.0)
    add_running(db, "celery@b:9", step=500, percent=90.0)  # another worker's job
    now = [100.0]
    registry = CollectorRegistry()
    registry.register(WorkerJobsCollector(db, "celery@a", clock=lambda: now[0]))
    get = registry.get_sample_value
    assert get("loralab_training_progress_ratio", {"queue": "cpu"}) == 0.1
    set_step(db, mine, 30, 30.0)
    now[0] += 4.0
    # (30 - 10) steps x 16 samples / 4 s
    assert get("loralab_training_samples_per_second", {"queue": "cpu"}) == 80.0
    assert get("loralab_training_progress_ratio", {"queue": "cpu"}) == 0.3
    assert get("loralab_training_samples_per_second", {"queue": "cuda"}) == 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_endpoint_serves_heartbeat_and_system_metrics(sqlite_db_url: str) -> None:
    port = free_port()
    settings = Settings.model_validate(
        dict(db={"url": sqlite_db_url}, observability={"worker_metrics_port": port})
    )
    stop = threading.Event()
    try:
        assert serve_worker_metrics(settings, "celery@test", stop) == port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        stop.set()
    text = body.decode()
    for name in (
        "loralab_worker_heartbeat_timestamp_seconds",
        "loralab_training_progress_ratio",
        "system_cpu_percent",
        "process_resident_memory_bytes",
    ):
        assert name in text
    # a second worker on the same port: refused quietly, the worker keeps running
    assert serve_worker_metrics(settings, "celery@test2", stop) is None


def test_port_zero_serves_nothing(sqlite_db_url: str) -> None:
    settings = Settings.model_validate(
        dict(db={"url": sqlite_db_url}, observability={"worker_metrics_port": 0})
    )
    assert serve_worker_metrics(settings, "celery@x", threading.Event()) is None
