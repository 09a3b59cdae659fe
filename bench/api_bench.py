"""Platform API benchmark: ``POST /train`` latency under 50 concurrent clients, how soon a worker
starts a job, and that every job ends exactly once.

What runs (all real, on this machine)::

    .venv/bin/python bench/api_bench.py                      # 1,000 jobs, SQLite
    .venv/bin/python bench/api_bench.py --db pg              # the same on PostgreSQL
    .venv/bin/python bench/api_bench.py --jobs 200           # quick check

a private redis-server, one Celery worker process (``--worker-concurrency`` 1), the API as
``uvicorn loralab.entrypoints.api.main:app`` in its own process (``--api-workers`` 1), a
migrated database (SQLite file or a private PostgreSQL database), ``--users`` 50 users and a
dataset registered from the CLI (shared with everyone).

1. idle pickup: ``--idle`` jobs sent one at a time over HTTP, each after the previous one ended,
   so each meets an idle worker: the time from the job's row (``created_at``) to the worker
   claiming it (``started_at``): broker hop + task start + claim. Also the single-client
   ``POST /train`` latency.
2. burst: ``--jobs`` ``POST /train`` from ``--clients`` 50 concurrent clients (httpx
   AsyncClient, one user each, back to back: a closed loop) while the worker drains them.
   Reported: request latency p50/p99 seen by the clients and the server's own mean (its
   Prometheus histogram), requests/s, then submission-to-start p50/p99 (this includes waiting
   behind the jobs ahead: queueing) and the accounting: every job accepted must end terminal
   with one claimed execution (``attempts == 1``), with exactly one row per accepted request.

The per-user active-job limit is raised for the run (``LORALAB_QUEUE__MAX_ACTIVE_PER_USER``) so
no request is refused. The jobs are trivially quick on purpose (as in ``queue_bench.py``): a
real dataset and base model but a declared label set the data does not have, so each job is
claimed, validated and fails in milliseconds. The API and the queue, not training, are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import load_before_measuring  # noqa: E402

SECRET = "api-bench-signing-secret-that-is-long-enough-0123456789"
PASSWORD = "bench passphrase 123"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
TERMINAL = {"succeeded", "failed", "cancelled"}
TARGET_P99_MS = 100.0
TARGET_PICKUP_S = 2.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(1000 * statistics.median(seconds), 1),
        "p99": round(1000 * percentile(seconds, 0.99), 1),
        "max": round(1000 * max(seconds), 1),
    }


# --- the parts ---------------------------------------------------------------------------------


def make_database(kind: str, tmp: Path) -> tuple[str, Any]:
    """A database URL and a cleanup callable (PostgreSQL: a private database, dropped after)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'loralab.db'}", lambda: None
    import psycopg

    admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    name = f"loralab_bench_{secrets.token_hex(5)}"
    admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def prepare(tmp: Path, db_url: str, broker_url: str, users: int) -> tuple[Any, Any, dict[str, str]]:
    """Migrated database, users, a shared dataset; the environment of the API and worker."""
    from tests.conftest import build_tiny_bert, make_rows, write_csv
    from tests.integration.services import platform_env

    from loralab.audit.log import AuditLog
    from loralab.datasets.service import DataSpec, register_dataset
    from loralab.infra.db import Database
    from loralab.infra.migrate import upgrade_database
    from loralab.settings import (
        AuthSettings,
        DbSettings,
        QueueSettings,
        RegistrySettings,
        Settings,
        StorageSettings,
    )
    from loralab.users.service import UserService

    model = build_tiny_bert(tmp / "models" / "tiny-bert")
    (tmp / "results").mkdir()
    settings = Settings(
        storage=StorageSettings(results_dir=tmp / "results", models_dir=model.parent),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        queue=QueueSettings(broker_url=broker_url, max_active_per_user=100_000),
        db=DbSettings(url=db_url),
        auth=AuthSettings(secret_key=SECRET),  # type: ignore[arg-type]
    )
    upgrade_database(settings.db_url)
    db = Database(settings.db_url)
    accounts = UserService(db, settings.auth, AuditLog(db))
    for i in range(users):
        accounts.create_user(f"user{i}", PASSWORD, "user")
    data = write_csv(tmp / "reviews.csv", make_rows(40))
    register_dataset(settings, "reviews", data, user="ops", spec=DataSpec(base_model=str(model)))
    env = platform_env(
        broker_url=broker_url,
        db_url=settings.db_url,
        results=tmp / "results",
        models=model.parent,
        cards=tmp / "cards",
        LORALAB_AUTH__SECRET_KEY=SECRET,
        LORALAB_QUEUE__MAX_ACTIVE_PER_USER="100000",
    )
    return settings, db, env


def jobs_rows(db: Any, ids: set[str] | None = None) -> list[Any]:
    from loralab.infra.db import Job

    with db.session() as session:
        query = session.query(Job)
        return [r for r in query if ids is None or r.id in ids]


def wait_finished(db: Any, job_id: str, timeout: float = 300) -> Any:
    from loralab.infra.db import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            row = session.get(Job, job_id)
            if row is not None and row.state in TERMINAL:
                return row
        time.sleep(0.005)
    raise SystemExit(f"job {job_id} never finished")


def pickup(row: Any) -> float:
    return float((row.started_at - row.created_at).total_seconds())


# --- the measurements --------------------------------------------------------------------------

BODY = {"train_file": "reviews@latest", "base_model": "tiny-bert", "labels": ["x", "y"]}


async def sign_in(client: Any, users: int) -> list[dict[str, str]]:
    tokens = []
    for i in range(users):
        response = await client.post("/login", json={"username": f"user{i}", "password": PASSWORD})
        response.raise_for_status()
        tokens.append({"Authorization": f"Bearer {response.json()['access_token']}"})
    return tokens


async def post_train(client: Any, headers: dict[str, str]) -> tuple[float, int, str | None]:
    import httpx

    start = time.perf_counter()
    try:
        response = await client.post("/train", json=BODY, headers=headers)
    except httpx.TransportError:  # counted as status 0; the accounting shows what happened
        return time.perf_counter() - start, 0, None
    took = time.perf_counter() - start
    job = response.json().get("task_id") if response.status_code == 202 else None
    return took, response.status_code, job


async def idle_phase(client: Any, db: Any, tokens: list[dict[str, str]], n: int) -> dict[str, Any]:
    """Warm-up job (the worker imports torch: not measured), then n jobs one at a time."""
    _, status, warm = await post_train(client, tokens[0])
    assert status == 202 and warm, status
    wait_finished(db, warm)
    latencies, ids = [], []
    for i in range(n):
        took, status, job = await post_train(client, tokens[i % len(tokens)])
        assert status == 202 and job, status
        latencies.append(took)
        ids.append(job)
        wait_finished(db, job, 60)
    rows = jobs_rows(db, set(ids))
    return {
        "jobs": n,
        "post_train_ms": summary_ms(latencies),
        "pickup_ms": summary_ms([pickup(r) for r in rows]),
    }


async def burst_phase(
    client: Any, tokens: list[dict[str, str]], jobs: int, clients: int
) -> dict[str, Any]:
    """``jobs`` POST /train from ``clients`` concurrent clients, back to back."""
    results: list[tuple[float, int, str | None]] = []
    share = [jobs // clients + (1 if c < jobs % clients else 0) for c in range(clients)]

    async def one_client(c: int) -> None:
        headers = tokens[c % len(tokens)]
        for _ in range(share[c]):
            results.append(await post_train(client, headers))

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_client(c) for c in range(clients)))
    seconds = time.perf_counter() - start
    client_cores = (time.process_time() - cpu) / seconds  # the load generator shares the cores
    statuses: dict[str, int] = {}
    for _, status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "requests": len(results),
        "clients": clients,
        "seconds": round(seconds, 2),
        "requests_per_second": round(len(results) / seconds, 1),
        "client_cpu_cores": round(client_cores, 2),
        "post_train_ms": summary_ms([took for took, _, _ in results]),
        "statuses": statuses,
        "ids": [job for _, _, job in results if job],
    }


def server_mean_ms(metrics_text: str) -> float | None:
    """Mean server-side time of POST /train from the API's Prometheus histogram."""
    total = count = None
    for line in metrics_text.splitlines():
        if 'method="POST"' in line and 'route="/train"' in line:
            name, value = line.rsplit(" ", 1)
            if name.split("{")[0].endswith("_sum"):
                total = float(value)
            elif name.split("{")[0].endswith("_count"):
                count = float(value)
    return round(1000 * total / count, 1) if total is not None and count else None


def account(db: Any, accepted: list[str], before: set[str], drain_from: float) -> dict[str, Any]:
    """Wait until every accepted job ended; count rows, states and executions."""
    wanted = set(accepted)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        rows = [r for r in jobs_rows(db) if r.id not in before]
        if sum(r.state in TERMINAL for r in rows if r.id in wanted) == len(wanted):
            break
        time.sleep(0.5)
    drained = time.perf_counter() - drain_from
    rows = [r for r in jobs_rows(db) if r.id not in before]
    started = [pickup(r) for r in rows if r.started_at is not None]
    return {
        "accepted": len(accepted),
        "distinct_ids": len(wanted),
        "rows": len(rows),
        "rows_not_accepted": sum(r.id not in wanted for r in rows),
        "terminal": sum(r.state in TERMINAL for r in rows),
        "executed_once": sum(r.attempts == 1 for r in rows),
        "executed_twice_or_more": sum(r.attempts > 1 for r in rows),
        "never_started": sum(r.attempts == 0 for r in rows),
        "drain_seconds": round(drained, 1),
        "pickup_s": {
            "p50": round(statistics.median(started), 2),
            "p99": round(percentile(started, 0.99), 2),
        },
        "errors_seen": sorted({(r.error or "")[:80] for r in rows})[:3],
    }


async def measure(url: str, db: Any, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        tokens = await sign_in(client, args.users)
        idle = await idle_phase(client, db, tokens, args.idle)
    before = {r.id for r in jobs_rows(db)}
    # fresh connections: the server closes idle keep-alive ones after 5 s, racing reuse
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        drain_from = time.perf_counter()
        burst = await burst_phase(client, tokens, args.jobs, args.clients)
        metrics = (await client.get("/metrics")).text
    burst["server_mean_ms"] = server_mean_ms(metrics)
    ids = burst.pop("ids")
    return {"idle": idle, "burst": burst, "accounting": account(db, ids, before, drain_from)}


# --- report ------------------------------------------------------------------------------------


def machine_line(db_kind: str, load: tuple[float, float, float]) -> tuple[str, dict[str, Any]]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:  # noqa: PTH123 - Linux only
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis": redis.split()[2].removeprefix("v=") if redis else None,
        "db": db_kind,
        "load_average_before": [round(x, 2) for x in load],
    }
    line = (
        f"{cpu}; {info['cores']} cores; python {info['python']}; redis {info['redis']}; "
        f"database {db_kind}; load before {load[0]:.2f}"
    )
    return line, info


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_table(result: dict[str, Any], line: str) -> None:
    idle, burst, acc = result["idle"], result["burst"], result["accounting"]
    one, many, pick = idle["post_train_ms"], burst["post_train_ms"], idle["pickup_ms"]
    p99_ok = verdict(many["p99"] < TARGET_P99_MS)
    pick_ok = verdict(pick["p99"] / 1000 < TARGET_PICKUP_S)
    rows = [
        ("POST /train, 1 client", f"p50 {one['p50']} ms", f"p99 {one['p99']} ms", ""),
        (
            f"POST /train, {burst['clients']} clients",
            f"p50 {many['p50']} ms",
            f"p99 {many['p99']} ms",
            f"target p99 < {TARGET_P99_MS:.0f} ms: {p99_ok}",
        ),
        ("  server-side mean", f"{burst['server_mean_ms']} ms", "", "(its Prometheus histogram)"),
        (
            "  throughput",
            f"{burst['requests_per_second']} req/s",
            f"{burst['requests']} in {burst['seconds']} s",
            f"client used {burst['client_cpu_cores']} cores; {burst['statuses']}",
        ),
        (
            "pickup, idle worker",
            f"p50 {pick['p50']} ms",
            f"p99 {pick['p99']} ms",
            f"target < {TARGET_PICKUP_S:.0f} s: {pick_ok}",
        ),
        (
            "pickup, burst (queueing)",
            f"p50 {acc['pickup_s']['p50']} s",
            f"p99 {acc['pickup_s']['p99']} s",
            f"drained in {acc['drain_seconds']} s",
        ),
        (
            "accounting",
            f"{acc['accepted']} accepted, {acc['rows']} rows",
            f"{acc['terminal']} terminal",
            f"once {acc['executed_once']}, twice+ {acc['executed_twice_or_more']}, "
            f"never {acc['never_started']}",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(f"machine: {line}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="burst: POST /train requests")
    parser.add_argument("--clients", type=int, default=50, help="burst: concurrent clients")
    parser.add_argument("--users", type=int, default=50, help="users the clients sign in as")
    parser.add_argument("--idle", type=int, default=30, help="jobs sent to an idle worker")
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--worker-concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "api_bench.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = load_before_measuring()
    from tests.integration.services import (
        RedisServer,
        free_port,
        kill_group,
        start_api,
        start_worker,
        wait_for,
        wait_for_heartbeat,
    )

    tmp = Path(tempfile.mkdtemp(prefix="api-bench-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    db_url, drop = make_database(args.db, tmp)
    processes = []
    try:
        settings, db, env = prepare(tmp, db_url, redis.url, args.users)
        processes.append(
            start_worker(
                env,
                tmp,
                tmp / "worker.log",
                concurrency=args.worker_concurrency,
                loglevel="WARNING",
            )
        )
        wait_for_heartbeat(env)
        port = free_port()
        processes.append(start_api(env, tmp, tmp / "api.log", port, args.api_workers))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), 60, "the API to answer", every=0.2)
        result = asyncio.run(measure(url, db, args))
        db.dispose()
    finally:
        for process in processes:
            kill_group(process)
        redis.kill()
        drop()
    line, info = machine_line(args.db, load)
    result.update(
        machine=info,
        machine_line=line,
        api_workers=args.api_workers,
        worker_concurrency=args.worker_concurrency,
        folder=str(tmp),
        targets={"post_train_p99_ms": TARGET_P99_MS, "idle_pickup_p99_s": TARGET_PICKUP_S},
    )
    print_table(result, line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"written: {args.out}")
    acc = result["accounting"]
    ok = acc["terminal"] == acc["rows"] == acc["accepted"] == acc["executed_once"]
    return 0 if ok else 1


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
