"""Job-queue benchmark: no job lost, none run twice, and how long a job waits for a worker.

What it measures (a private redis-server, SQLite, one real Celery worker process)::

    .venv/bin/python bench/queue_bench.py                 # 1,000 jobs
    .venv/bin/python bench/queue_bench.py --jobs 200      # quick check

1. idle latency: ``--idle`` jobs submitted one at a time, each after the previous one started:
   the time from submission (the row's ``created_at``) to a worker claiming it (``started_at``)
   with an empty queue: broker hop + task start + the claim.
2. burst: ``--jobs`` jobs submitted as fast as ``JobService.submit`` goes (row insert + Redis
   publish), from ``--users`` users, while the worker drains them. Reported: submit rate, time to
   drain, submission-to-start p50/p99 (this includes waiting behind the jobs ahead: queueing),
   and accounting: every job must end terminal, with exactly one claimed execution
   (``attempts == 1``): none lost, none duplicated.

The jobs are trivially small on purpose: a real dataset and base model, but a declared label set
the data does not have, so each job is claimed, validated and fails in milliseconds. The queue,
not training, is what is measured. (The HTTP ``POST /train`` latency is measured elsewhere.)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    process = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return process


def build(tmp: Path, port: int, users: int) -> tuple[Any, Any, list[Any], dict[str, str]]:
    """Settings, database, users and a registered dataset; the worker's environment."""
    from tests.conftest import build_tiny_bert, make_rows, write_csv

    from loralab.datasets.service import DataSpec, register_dataset
    from loralab.infra.db import Base, Database, User
    from loralab.settings import QueueSettings, Settings, StorageSettings

    model = build_tiny_bert(tmp / "models" / "tiny-bert")
    (tmp / "results").mkdir()
    settings = Settings(
        storage=StorageSettings(results_dir=tmp / "results", models_dir=model.parent),
        queue=QueueSettings(broker_url=f"redis://127.0.0.1:{port}/0", max_active_per_user=100_000),
        db={"url": f"sqlite:///{tmp / 'loralab.db'}"},  # type: ignore[arg-type]
    )
    db = Database(settings.db_url)
    Base.metadata.create_all(db.engine)
    actors = []
    with db.session() as session:
        for i in range(users):
            user = User(username=f"user{i}", password_hash="x", role="user")
            session.add(user)
            session.flush()
            actors.append(
                type("Who", (), {"id": user.id, "username": user.username, "role": "user"})()
            )
    data = write_csv(tmp / "reviews.csv", make_rows(40))
    register_dataset(settings, "reviews", data, user="user0", spec=DataSpec(base_model=str(model)))
    env = {
        **os.environ,
        "LORALAB_QUEUE__BROKER_URL": settings.queue.broker_url,
        "LORALAB_DB__URL": settings.db_url,
        "LORALAB_STORAGE__RESULTS_DIR": str(tmp / "results"),
        "LORALAB_STORAGE__MODELS_DIR": str(model.parent),
        "LORALAB_REGISTRY__CARD_DIR": str(tmp / "cards"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return settings, db, actors, env


def rows(db: Any) -> list[Any]:
    from loralab.infra.db import Job

    with db.session() as session:
        return list(session.query(Job))


def latency(row: Any) -> float:
    started: datetime = row.started_at
    return (started - row.created_at).total_seconds()


def wait_started(db: Any, job_id: str, timeout: float = 120, finished: bool = False) -> None:
    """Until the job started (or, with ``finished``, ended)."""
    from loralab.infra.db import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            row = session.get(Job, job_id)
            started = row is not None and row.started_at is not None
            if started and (not finished or row.finished_at is not None):
                return
        time.sleep(0.005)
    raise SystemExit(f"job {job_id} never started")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=30)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()

    from loralab.entrypoints.worker.app import create_celery
    from loralab.infra.queue import CeleryJobQueue
    from loralab.jobs.requests import TrainRequest
    from loralab.jobs.service import JobService

    tmp = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    port = free_port()
    redis = start_redis(tmp / "redis", port)
    settings, db, actors, env = build(tmp, port, args.users)
    ctx = type("Ctx", (), {"client": "bench", "request_id": None})()
    audit = type("NoAudit", (), {"record": lambda self, session, **kw: None})()
    jobs = JobService(db, settings, CeleryJobQueue(create_celery(settings)), audit)
    request = TrainRequest(train_file="reviews@latest", base_model="tiny-bert", labels=["x", "y"])
    worker_log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "loralab.entrypoints.worker.main",
            "worker",
            "-Q",
            "cpu",
            "--concurrency",
            str(args.concurrency),
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=tmp,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        result = run(jobs, db, actors, ctx, request, args)
    finally:
        os.killpg(worker.pid, 9)
        redis.kill()
    result.update(machine=os.cpu_count(), worker_concurrency=args.concurrency, folder=str(tmp))
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "queue_bench.json").write_text(json.dumps(result, indent=1))


def run(jobs: Any, db: Any, actors: list[Any], ctx: Any, request: Any, args: Any) -> dict[str, Any]:
    """Both phases; returns the figures."""
    warm = jobs.submit(actors[0], request, ctx).task_id
    # The worker's first job imports torch and friends: not measured.
    wait_started(db, warm, timeout=300, finished=True)
    idle: list[float] = []
    for _ in range(args.idle):
        job_id = jobs.submit(actors[0], request, ctx).task_id
        wait_started(db, job_id, finished=True)  # the next one meets an idle worker
    idle = [latency(r) for r in rows(db) if r.id != warm and r.started_at is not None]
    before = {r.id for r in rows(db)}
    t0 = time.perf_counter()
    for i in range(args.jobs):
        jobs.submit(actors[i % len(actors)], request, ctx)
    submit_seconds = time.perf_counter() - t0
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        burst = [r for r in rows(db) if r.id not in before]
        if all(r.state in {"succeeded", "failed", "cancelled"} for r in burst):
            break
        time.sleep(0.5)
    drain_seconds = time.perf_counter() - t0
    waits = [latency(r) for r in burst if r.started_at is not None]
    return {
        "idle_jobs": len(idle),
        "idle_start_latency_ms": {
            "p50": round(1000 * statistics.median(idle), 1),
            "p99": round(1000 * percentile(idle, 0.99), 1),
        },
        "burst_jobs": args.jobs,
        "submit_per_second": round(args.jobs / submit_seconds, 1),
        "drain_seconds": round(drain_seconds, 1),
        "jobs_per_second": round(args.jobs / drain_seconds, 1),
        "burst_start_latency_s": {
            "p50": round(statistics.median(waits), 2),
            "p99": round(percentile(waits, 0.99), 2),
        },
        "accounted": len(burst),
        "terminal": sum(r.state in {"succeeded", "failed", "cancelled"} for r in burst),
        "executed_once": sum(r.attempts == 1 for r in burst),
        "executed_twice_or_more": sum(r.attempts > 1 for r in burst),
        "never_started": sum(r.attempts == 0 for r in burst),
        "errors_seen": sorted({(r.error or "")[:80] for r in burst})[:3],
    }


if __name__ == "__main__":
    main()
