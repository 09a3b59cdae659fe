"""Several API processes behave like one: two uvicorn processes (separate results homes, as on
two machines) and one ``loralab api --workers 2`` on one PostgreSQL database and one Redis.

All three start at once on an empty database (migrations and the bootstrap admin race). Failed
sign-ins spread over the processes lock a user out after ``auth.login_max_failures`` in total,
and an address after ``limits.login_failures_per_address``; a burst of parallel guesses gets no
more than the limit; the two workers of ``loralab api`` share the limits and ``/metrics``.

Each test signs in from its own client address (``X-Forwarded-For`` behind a trusted proxy,
127.0.0.1), so the counts of one test do not reach the next.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from tests.integration.services import (
    BIN,
    RedisServer,
    free_port,
    kill_group,
    platform_env,
    start_api,
    wait_for,
)

pytestmark = [pytest.mark.integration]

SECRET = "a-signing-secret-shared-by-every-api-process-0123456789"
PASSWORD = "the right password 123"
MAX_FAILURES = 3
PER_ADDRESS = 6


@dataclass
class Stack:
    db_url: str
    one: str  # uvicorn process A
    two: str  # uvicorn process B, another results home
    pool: str  # loralab api --workers 2
    pool_pid: int


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.conftest import _pg_admin, _pg_create, _pg_drop

    tmp = tmp_path_factory.mktemp("api-processes")
    redis = RedisServer(tmp / "redis")
    redis.start()
    admin = _pg_admin()
    name = _pg_create(admin)  # empty: the processes below migrate it, all at once
    db_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port() for _ in range(3)]
        envs = [_env(tmp / home, redis.url, db_url) for home in ("a", "b", "c")]
        processes.append(start_api(envs[0], tmp, tmp / "a.log", ports[0]))
        processes.append(start_api(envs[1], tmp, tmp / "b.log", ports[1]))
        processes.append(_start_pool(envs[2], tmp, tmp / "c.log", ports[2]))
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, log in zip(urls, ("a", "b", "c"), strict=True):
            try:
                wait_for(lambda url=url: _live(url), 120, f"the API at {url}", every=0.2)
            except AssertionError:
                raise AssertionError((tmp / f"{log}.log").read_text()[-3000:]) from None
        _create_users(db_url)
        yield Stack(db_url, urls[0], urls[1], urls[2], processes[2].pid)
    finally:
        for process in processes:
            kill_group(process)
        redis.kill()
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]


def _env(home: Path, broker: str, db_url: str) -> dict[str, str]:
    return platform_env(
        broker_url=broker, db_url=db_url, results=home / "results", models=home / "models",
        cards=home / "cards",
        LORALAB_AUTH__SECRET_KEY=SECRET,
        LORALAB_AUTH__BOOTSTRAP_ADMIN="boss",
        LORALAB_AUTH__BOOTSTRAP_PASSWORD=PASSWORD,
        LORALAB_AUTH__LOGIN_MAX_FAILURES=str(MAX_FAILURES),
        LORALAB_LIMITS__LOGIN_FAILURES_PER_ADDRESS=str(PER_ADDRESS),
        LORALAB_API__TRUSTED_PROXIES='["127.0.0.1"]',
        LORALAB_LOG__LEVEL="WARNING",
    )  # fmt: skip


def _start_pool(env: dict[str, str], cwd: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    """``loralab api --workers 2`` in its own process group."""
    args = ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    return subprocess.Popen(
        [str(BIN / "loralab"), *args], env=env, cwd=cwd, stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _create_users(db_url: str) -> None:
    from loralab.audit.log import AuditLog
    from loralab.infra.db import Database
    from loralab.settings import AuthSettings
    from loralab.users.service import UserService

    db = Database(db_url)
    users = UserService(db, AuthSettings(secret_key=SECRET), AuditLog(db))  # type: ignore[arg-type]
    for name in ("carol", "dave", "erin"):
        users.create_user(name, PASSWORD)
    db.dispose()


def sign_in(url: str, name: str, password: str, client: str) -> httpx.Response:
    body = {"username": name, "password": password}
    return httpx.post(f"{url}/login", json=body, headers={"X-Forwarded-For": client}, timeout=30)


def test_processes_started_together_migrate_once_and_make_one_admin(stack: Stack) -> None:
    from sqlalchemy import select

    from loralab.audit.log import AuditLog
    from loralab.infra.db import Database, User

    db = Database(stack.db_url)
    try:
        with db.session() as session:
            admins = session.scalars(select(User.username).where(User.role == "admin")).all()
        assert admins == ["boss"]
        assert AuditLog(db).verify().ok
    finally:
        db.dispose()
    for url in (stack.one, stack.two, stack.pool):
        assert sign_in(url, "boss", PASSWORD, "198.51.100.1").status_code == 200


def test_failed_sign_ins_on_two_processes_lock_the_user_out(stack: Stack) -> None:
    client = "198.51.100.10"
    turns = [stack.one, stack.two, stack.one][:MAX_FAILURES]
    for url in turns:  # each process alone has seen fewer than the limit
        assert sign_in(url, "carol", "a wrong password", client).status_code == 401
    for url in (stack.two, stack.one, stack.pool):  # even the right password now waits
        refused = sign_in(url, "carol", PASSWORD, client)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) > 0
    assert sign_in(stack.two, "carol", PASSWORD, "198.51.100.11").status_code == 200


def test_failures_from_one_address_on_two_processes_block_the_address(stack: Stack) -> None:
    client = "198.51.100.20"
    for i in range(PER_ADDRESS):  # a new name each time: no user reaches its own limit
        url = (stack.one, stack.two)[i % 2]
        assert sign_in(url, f"nobody{i}", "a wrong password", client).status_code == 401
    refused = sign_in(stack.one, "erin", PASSWORD, client)
    assert refused.status_code == 429 and "address" in refused.json()["detail"]
    assert sign_in(stack.two, "erin", PASSWORD, client).status_code == 429
    assert sign_in(stack.two, "erin", PASSWORD, "198.51.100.21").status_code == 200


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(stack: Stack) -> None:
    """Guesses sent together to both processes: each is checked against the failures before
    it, so no more than ``login_max_failures`` passwords are tried."""
    client = "198.51.100.30"
    urls = [stack.one, stack.two] * 6

    def guess(url: str) -> int:
        return sign_in(url, "dave", "a wrong password", client).status_code

    with ThreadPoolExecutor(len(urls)) as pool:
        statuses = list(pool.map(guess, urls))
    assert statuses.count(401) == MAX_FAILURES, statuses
    assert statuses.count(429) == len(urls) - MAX_FAILURES, statuses


def test_a_burst_of_guesses_at_many_names_gets_no_more_than_the_address_limit(
    stack: Stack,
) -> None:
    client = "198.51.100.31"
    names = [f"burst{i}" for i in range(2 * PER_ADDRESS)]

    def guess(i: int) -> int:
        url = (stack.one, stack.two)[i % 2]
        return sign_in(url, names[i], "a wrong password", client).status_code

    with ThreadPoolExecutor(len(names)) as pool:
        statuses = list(pool.map(guess, range(len(names))))
    assert statuses.count(401) == PER_ADDRESS, statuses
    assert statuses.count(429) == len(names) - PER_ADDRESS, statuses


# --- loralab api --workers 2 -------------------------------------------------------------------


def _workers_of(parent: int) -> set[int]:
    children = psutil.Process(parent).children(recursive=True)
    return {c.pid for c in children if "spawn_main" in " ".join(c.cmdline())}


def _holder(port: int, pids: set[int]) -> int | None:
    """The worker holding the server side of the connection from local ``port``."""
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED:
                return pid
    return None


def pinned_clients(url: str, parent: int, tries: int = 60) -> list[httpx.Client]:
    """One keep-alive client per worker of ``loralab api`` (which worker accepts a connection
    is up to the kernel: open connections until each worker holds one)."""
    pids = wait_for(lambda: _workers_of(parent) if len(_workers_of(parent)) == 2 else None,
                    30, "two API workers")  # fmt: skip
    found: dict[int, httpx.Client] = {}
    spare: list[httpx.Client] = []
    for _ in range(tries):
        client = httpx.Client(base_url=url, timeout=30)
        response = client.get("/health/live")
        local = response.extensions["network_stream"].get_extra_info("socket").getsockname()[1]
        holder = _holder(local, pids)
        if holder is not None and holder not in found:
            found[holder] = client
        else:
            spare.append(client)
        if len(found) == 2:
            break
    for client in spare:
        client.close()
    assert len(found) == 2, f"every connection went to one worker of {pids}"
    return list(found.values())


def _count(metrics: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith(line_start))  # fmt: skip


def test_the_workers_of_loralab_api_share_limits_and_metrics(stack: Stack) -> None:
    first, second = pinned_clients(stack.pool, stack.pool_pid)
    try:
        headers = {"X-Forwarded-For": "198.51.100.40"}
        wrong = {"username": "erin", "password": "a wrong password"}
        for client in [first, second, first][:MAX_FAILURES]:
            assert client.post("/login", json=wrong, headers=headers).status_code == 401
        right = {"username": "erin", "password": PASSWORD}
        assert second.post("/login", json=right, headers=headers).status_code == 429
        assert first.post("/login", json=right, headers=headers).status_code == 429
        # every worker answers /metrics with the totals of both
        logins = 'loralab_http_requests_total{method="POST",route="/login"'
        seen = [_count(client.get("/metrics").text, logins) for client in (first, second)]
        assert seen[0] == seen[1] >= MAX_FAILURES + 2, seen
    finally:
        first.close()
        second.close()
