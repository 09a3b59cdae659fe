"""API scale-out benchmark: ``POST /train`` with 1, 2 and 4 API processes on PostgreSQL, at
fixed offered loads (open loop), against a bare FastAPI endpoint doing the same single INSERT.

What runs (all real, on this machine)::

    .venv/bin/python bench/api_scale.py                          # 25, 50, 100 req/s, 10 s each
    .venv/bin/python bench/api_scale.py --rates 25,50 --seconds 5 --processes 1,2   # quick

a private redis-server (broker and limits), a private PostgreSQL database (127.0.0.1:5432,
dropped afterwards), then one setup after another on free ports:

- ``bare xN``: ``bench/bare_train_app.py`` under ``uvicorn --workers N`` (``--bare-processes``,
  default 1 and 2): validate the body, one INSERT into a jobs-like table, answer. The ceiling on
  this machine; each load's ceiling is the best bare setup at that load.
- ``platform xN``: ``loralab api --workers N`` (``--processes``, default 1, 2, 4): sign-in token,
  per-user limit in Redis, dataset pinning, quota check, the jobs row and its audit record in
  one transaction, the publish to Redis, the answer. No worker runs: ``queue.refuse_unserved``
  is off (the job waits with a warning), and the per-user quota and train limit are raised.
  ``--users`` users, signed in once; requests take turns among them.

Each setup gets a warm-up (``--warmup`` s at 10 req/s, not reported), then each offered load for
``--seconds``: request i is sent at ``start + i / rate`` whatever the answers before it (open
loop: asyncio + httpx, one connection pool per load). Latency runs from the scheduled send time,
so a load generator that falls behind shows in the figures instead of hiding them. Reported per
setup and load: achieved req/s (202 answers / time from the first scheduled send to the last
answer), p50, p99, errors (anything but 202, timeouts), the ratio of achieved req/s to the
ceiling, and the load average before the setup. No asserts on time: numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_bench import machine_line, make_database, percentile  # noqa: E402
from machine import load_before_measuring  # noqa: E402

SECRET = "api-scale-signing-secret-that-is-long-enough-0123456789"
PASSWORD = "bench passphrase 123"
BODY = {"train_file": "reviews@latest", "base_model": "tiny-bert", "max_steps": 2}
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Setup:
    name: str
    kind: str  # bare | platform
    processes: int


# --- the parts ---------------------------------------------------------------------------------


def prepare(tmp: Path, db_url: str, broker_url: str, users: int) -> dict[str, str]:
    """Migrated database, users, a shared dataset, the bare table; the platform's environment."""
    from sqlalchemy import create_engine, text
    from tests.conftest import build_tiny_bert, make_rows, write_csv
    from tests.integration.services import platform_env

    from bare_train_app import TABLE
    from loralab.audit.log import AuditLog
    from loralab.datasets.service import DataSpec, register_dataset
    from loralab.infra.db import Database, normalise_url
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
        queue=QueueSettings(broker_url=broker_url),
        db=DbSettings(url=db_url),
        auth=AuthSettings(secret_key=SECRET),  # type: ignore[arg-type]
    )
    upgrade_database(settings.db_url)
    db = Database(settings.db_url)
    accounts = UserService(db, settings.auth, AuditLog(db))
    for i in range(users):
        accounts.create_user(f"user{i}", PASSWORD, "user")
    db.dispose()
    data = write_csv(tmp / "reviews.csv", make_rows(40))
    register_dataset(settings, "reviews", data, user="ops", spec=DataSpec(base_model=str(model)))
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:
        conn.execute(text(TABLE))
    engine.dispose()
    return platform_env(
        broker_url=broker_url,
        db_url=settings.db_url,
        results=tmp / "results",
        models=model.parent,
        cards=tmp / "cards",
        LORALAB_AUTH__SECRET_KEY=SECRET,
        LORALAB_QUEUE__MAX_ACTIVE_PER_USER="1000000000",
        LORALAB_QUEUE__REFUSE_UNSERVED="false",
        LORALAB_LIMITS__TRAIN_PER_USER="1000000000",
        LORALAB_LOG__LEVEL="WARNING",  # the bare app logs no access lines either
        BARE_DB_URL=normalise_url(db_url),
    )


def start(setup: Setup, env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """The setup's server in its own process group."""
    bin_dir = Path(sys.executable).parent
    where = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(setup.processes)]
    if setup.kind == "bare":
        args = [str(bin_dir / "uvicorn"), "bare_train_app:app", "--app-dir", str(ROOT / "bench")]
        args += [*where, "--log-level", "warning", "--no-access-log"]
    else:
        args = [str(bin_dir / "loralab"), "api", *where]
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _live(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def sign_in(url: str, users: int) -> list[dict[str, str]]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        tokens = []
        for i in range(users):
            body = {"username": f"user{i}", "password": PASSWORD}
            response = await client.post("/login", json=body)
            response.raise_for_status()
            tokens.append({"Authorization": f"Bearer {response.json()['access_token']}"})
    return tokens


# --- the load ----------------------------------------------------------------------------------


async def open_loop(
    url: str, rate: float, seconds: float, headers: list[dict[str, str]]
) -> dict[str, Any]:
    """``rate`` × ``seconds`` POST /train sent on a fixed schedule, whatever the answers."""
    import httpx

    count = max(1, int(rate * seconds))
    results: list[tuple[float, float, int]] = []  # (latency from schedule, send lag, status)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        begin = loop.time() + 0.05
        cpu = time.process_time()

        async def one(i: int) -> None:
            scheduled = begin + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            sent = loop.time()
            try:
                response = await client.post("/train", json=BODY, headers=headers[i % len(headers)])
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            results.append((loop.time() - scheduled, sent - scheduled, status))

        await asyncio.gather(*(one(i) for i in range(count)))
        wall = loop.time() - begin
        generator_cores = (time.process_time() - cpu) / wall
    ok = [latency for latency, _, status in results if status == 202]
    statuses: dict[str, int] = {}
    for _, _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    latencies = ok or [float("nan")]
    return {
        "offered_rps": rate,
        "sent": count,
        "ok": len(ok),
        "errors": count - len(ok),
        "statuses": statuses,
        "achieved_rps": round(len(ok) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies), 1),
        "send_lag_p99_ms": round(1000 * percentile([lag for _, lag, _ in results], 0.99), 1),
        "generator_cores": round(generator_cores, 2),
    }


def jobs_count(db_url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    from loralab.infra.db import normalise_url

    engine = create_engine(normalise_url(db_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
    finally:
        engine.dispose()


def run_setup(
    setup: Setup,
    env: dict[str, str],
    tmp: Path,
    args: argparse.Namespace,
    tokens: list[dict[str, str]] | None,
) -> tuple[dict[str, Any], list[dict[str, str]] | None]:
    from tests.integration.services import free_port, kill_group, wait_for

    load = os.getloadavg()[0]
    port = free_port()
    log = tmp / f"{setup.name.replace(' ', '-')}.log"
    process = start(setup, env, port, log)
    url = f"http://127.0.0.1:{port}"
    table = "bare_jobs" if setup.kind == "bare" else "jobs"
    try:
        wait_for(lambda: _live(url), 180, f"{setup.name} to answer", every=0.2)
        if setup.kind == "platform" and tokens is None:
            tokens = asyncio.run(sign_in(url, args.users))
        headers = tokens or [{}]
        asyncio.run(open_loop(url, 10, args.warmup, headers))
        before = jobs_count(env["LORALAB_DB__URL"], table)
        rows = []
        for rate in args.rates:
            time.sleep(args.pause)
            rows.append(asyncio.run(open_loop(url, rate, args.seconds, headers)))
            print(f"  {setup.name:12} {rate:>5.0f} req/s offered: {_short(rows[-1])}", flush=True)
        inserted = jobs_count(env["LORALAB_DB__URL"], table) - before
    except AssertionError:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        kill_group(process)
    accepted = sum(row["ok"] for row in rows)
    return {
        "setup": setup.name,
        "kind": setup.kind,
        "processes": setup.processes,
        "load_before": round(load, 2),
        "rows": rows,
        "rows_inserted": inserted,
        "accepted": accepted,
    }, tokens


def _short(row: dict[str, Any]) -> str:
    return (
        f"{row['achieved_rps']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
        f"errors {row['errors']}"
    )


# --- report ------------------------------------------------------------------------------------


def ceilings(results: list[dict[str, Any]]) -> dict[float, dict[str, Any]]:
    """Per offered load, the bare setup with the most achieved req/s (then the lowest p99)."""
    best: dict[float, dict[str, Any]] = {}
    for result in results:
        if result["kind"] != "bare":
            continue
        for row in result["rows"]:
            rate, held = row["offered_rps"], best.get(row["offered_rps"])
            key = (row["achieved_rps"], -row["p99_ms"])
            if held is None or key > (held["achieved_rps"], -held["p99_ms"]):
                best[rate] = {**row, "setup": result["setup"]}
    return best


def print_table(results: list[dict[str, Any]], line: str, end_load: float) -> None:
    best = ceilings(results)
    header = ("setup", "offered", "achieved", "p50 ms", "p99 ms", "errors", "ratio", "load")
    rows = [header]
    for result in results:
        for row in result["rows"]:
            ceiling = best.get(row["offered_rps"])
            ratio = "-"
            if result["kind"] == "platform" and ceiling and ceiling["achieved_rps"]:
                ratio = f"{row['achieved_rps'] / ceiling['achieved_rps']:.2f}"
            rows.append((
                result["setup"], f"{row['offered_rps']:.0f}", f"{row['achieved_rps']}",
                f"{row['p50_ms']}", f"{row['p99_ms']}", f"{row['errors']}", ratio,
                f"{result['load_before']:.2f}",
            ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in
                        enumerate(zip(r, widths, strict=True))))  # fmt: skip
    print(
        f"ratio: platform achieved req/s / the best bare setup at the same offered load "
        f"(target >= {TARGET_RATIO}); load: the 1-minute load average before the setup "
        f"started (at the end: {end_load:.2f})"
    )
    for result in results:
        if result["kind"] == "platform":
            print(
                f"{result['setup']}: {result['accepted']} accepted, {result['rows_inserted']} "
                "jobs rows inserted"
            )
    print(f"machine: {line}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part]

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=numbers, default=[25, 50, 100], help="offered req/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per offered load")
    parser.add_argument("--processes", type=numbers, default=[1, 2, 4], help="API processes")
    parser.add_argument("--bare-processes", type=numbers, default=[1, 2], help="bare processes")
    parser.add_argument("--users", type=int, default=20, help="signed-in users taking turns")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds, 10 req/s")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between loads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "api_scale.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = load_before_measuring()
    from tests.integration.services import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="api-scale-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    db_url, drop = make_database("pg", tmp)
    setups = [Setup(f"bare x{n}", "bare", n) for n in args.bare_processes]
    setups += [Setup(f"platform x{n}", "platform", n) for n in args.processes]
    results: list[dict[str, Any]] = []
    try:
        env = prepare(tmp, db_url, redis.url, args.users)
        tokens: list[dict[str, str]] | None = None
        for setup in setups:
            result, tokens = run_setup(setup, env, tmp, args, tokens)
            results.append(result)
    finally:
        redis.kill()
        drop()
    end_load = os.getloadavg()[0]
    line, info = machine_line("pg", load)
    print_table(results, line, end_load)
    out = {
        "results": results,
        "ceilings": {str(k): v for k, v in ceilings(results).items()},
        "machine": info,
        "machine_line": line,
        "load_average_end": round(end_load, 2),
        "seconds_per_load": args.seconds,
        "folder": str(tmp),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
