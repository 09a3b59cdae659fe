"""What one ``POST /train`` costs inside the platform API process: CPU ms, SQL statements,
database sessions (pool checkouts), Redis commands, and a cProfile of the busiest functions.

The same setup as ``api_scale.py`` (a private PostgreSQL database, a private redis-server, the
tiny model and a shared dataset, users signed in once, no worker: ``queue.refuse_unserved``
off), but the app runs in this process under FastAPI's TestClient, one request at a time::

    .venv/bin/python bench/train_profile.py                 # 200 requests, top 25 functions
    .venv/bin/python bench/train_profile.py --requests 50 --top 40

CPU ms is this process's CPU time per request (the app and the TestClient's own share, which
``GET /health/live`` shows beside it); statements are counted by an engine listener, sessions
by pool checkouts (a pre-ping runs once per checkout), Redis commands by the private server's
``total_commands_processed``. Numbers, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_bench import make_database  # noqa: E402
from api_scale import BODY, PASSWORD, prepare  # noqa: E402

SHOWN = r"loralab|celery|kombu|filelock|sqlalchemy/orm/session|redis/client"  # in the profile


class Counts:
    """SQL statements (by first word) and pool checkouts of one engine."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.statements: Counter[str] = Counter()
        self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements[" ".join(statement.split()[:2]).upper()] += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def reset(self) -> None:
        self.statements.clear()
        self.checkouts = 0


def redis_commands(url: str) -> Counter[str]:
    """Commands the server has run so far, by name (``info`` included)."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def measure(
    client: Any, n: int, send: Any, counts: Counts, broker: str, batches: int = 10
) -> dict[str, Any]:
    """Per request: CPU and wall ms (the least and the median of ``batches`` batches: other
    work on the machine only ever adds), statements, checkouts and Redis commands."""
    counts.reset()
    redis_before = redis_commands(broker)
    size = max(1, n // batches)
    cpus, walls = [], []
    for start in range(0, size * batches, size):
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(start, start + size):
            send(client, i)
        cpus.append((time.process_time() - cpu) / size)
        walls.append((time.perf_counter() - wall) / size)
    n = size * batches
    redis_used = redis_commands(broker) - redis_before
    redis_used["info"] -= 1  # the call that read the figures
    return {
        "cpu_ms_min": round(1000 * min(cpus), 2),
        "cpu_ms_median": round(1000 * statistics.median(cpus), 2),
        "wall_ms_median": round(1000 * statistics.median(walls), 2),
        "statements": round(sum(counts.statements.values()) / n, 2),
        "by_kind": {k: round(v / n, 2) for k, v in counts.statements.most_common()},
        "checkouts": round(counts.checkouts / n, 2),
        "redis_commands": round(sum(redis_used.values()) / n, 2),
        "redis_by_name": {k: round(v / n, 2) for k, v in redis_used.most_common() if v > 0},
    }


def calls_per(app: Any, send: Any, n: int) -> float:
    """Python and C function calls per ``send(client, i)`` in every thread of a TestClient
    of a fresh ``app`` (its event loop and worker threads start under the counter): a figure
    that, unlike CPU time on a shared machine, is the same from run to run."""
    from fastapi.testclient import TestClient

    calls, counting = [0], [False]
    lock = threading.Lock()

    def count(_frame: Any, event: str, _arg: Any) -> None:
        if counting[0] and event in ("call", "c_call"):
            with lock:
                calls[0] += 1

    threading.setprofile(count)
    sys.setprofile(count)
    try:
        with TestClient(app) as client:
            for i in range(5):  # the new loop's first requests start its threads
                send(client, i)
            counting[0] = True
            for i in range(n):
                send(client, i)
            counting[0] = False
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return calls[0] / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="POST /train measured")
    parser.add_argument("--users", type=int, default=4, help="signed-in users taking turns")
    parser.add_argument(
        "--top",
        type=int,
        default=25,
        help="functions shown by cumulative time (loralab, celery, kombu, filelock)",
    )
    args = parser.parse_args(argv)

    from tests.integration.services import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="train-profile-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    db_url, drop = make_database("pg", tmp)
    try:
        env = prepare(tmp, db_url, redis.url, args.users)
        os.environ.update(env)
        from fastapi.testclient import TestClient

        from loralab.entrypoints.api.app import create_app
        from loralab.identity import RequestContext
        from loralab.infra.ratelimit import limits_of
        from loralab.jobs.requests import TrainRequest
        from loralab.settings import load_settings

        app = create_app(load_settings())
        counts = Counts(app.state.services.db.engine)
        if os.environ.get("H4_NO_PING"):
            app.state.services.db.engine.pool._pre_ping = False
        with TestClient(app) as client:
            headers = []
            for i in range(args.users):
                body = {"username": f"user{i}", "password": PASSWORD}
                token = client.post("/login", json=body).json()["access_token"]
                headers.append({"Authorization": f"Bearer {token}"})

            def train(c: Any, i: int) -> None:
                response = c.post("/train", json=BODY, headers=headers[i % len(headers)])
                assert response.status_code == 202, response.text

            def live(c: Any, _i: int) -> None:
                assert c.get("/health/live").status_code == 200

            found = app.state.services
            tokens = [h["Authorization"].split()[1] for h in headers]
            ctx = RequestContext(client="127.0.0.1", request_id="profile")
            train_limit = limits_of(found.settings.limits).train

            def submit(_c: Any, i: int) -> None:
                """What the route calls, in this thread (cProfile sees one thread)."""
                actor = found.users.authenticate(tokens[i % len(tokens)])
                found.limiter.enforce(train_limit, f"{actor.id}:{actor.username}")
                found.jobs.submit(actor, TrainRequest.model_validate(BODY), ctx)

            for i in range(20):  # warm-up: imports, caches, pools
                train(client, i)
            health = measure(client, args.requests, live, counts, redis.url)
            result = measure(client, args.requests, train, counts, redis.url)
            direct = measure(client, args.requests, submit, counts, redis.url)
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            profiler.enable()
            profiled = min(args.requests, 100)
            for i in range(profiled):
                submit(client, i)
            profiler.disable()
        request_calls = calls_per(create_app(load_settings()), train, 50)
        health_calls = calls_per(create_app(load_settings()), live, 50)
        print(f"GET /health/live per request: {health['cpu_ms_min']} ms CPU (least of 10)")
        print(f"POST /train per request ({args.requests}, one at a time): {result}")
        print(f"the services alone (authenticate, limit, submit): {direct}")
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        calls = stats.total_calls / profiled  # type: ignore[attr-defined]
        print(f"Python function calls per submit (services alone, deterministic): {calls:.0f}")
        print(
            f"Python function calls per POST /train, every thread (TestClient included): "
            f"{request_calls:.0f}; per GET /health/live: {health_calls:.0f}"
        )
        stats.print_stats(
            r"loralab|celery|kombu|filelock|sqlalchemy/orm/session|redis/client", args.top
        )
        print(out.getvalue())
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        redis.kill()
        drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
