"""Real parts for the integration tests and benches: a private redis-server, Celery worker
processes, a uvicorn API process, a private PostgreSQL database.

Nothing here touches the system services (Redis on 6379): every server gets a free port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loralab.settings import Settings

BIN = Path(sys.executable).parent
CELERY = str(BIN / "celery")
PG_HOST_URL = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], seconds: float, what: str, every: float = 0.05) -> Any:
    """The first truthy value of ``check()``; AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


class RedisServer:
    """A private redis-server (never the system one on 6379) with an fsync'd append-only file."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.process = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        wait_for(lambda: redis_answers(self.port), 10, "redis-server to answer")

    def await_no_consumer(self, seconds: float = 30) -> None:
        """Until no connection waits in BRPOP (call it with every worker killed). A message
        pushed while Redis still counts a killed worker's BRPOP as waiting is handed to that
        dead connection and lost: the next test's job never reached its worker."""
        import redis

        client = redis.Redis.from_url(self.url)

        def none_waiting() -> bool:
            return not any(
                c.get("cmd") == "brpop" and "b" in c.get("flags", "") for c in client.client_list()
            )

        try:
            wait_for(none_waiting, seconds, "the killed workers' broker connections to close")
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def platform_env(
    *,
    broker_url: str,
    db_url: str,
    results: Path,
    models: Path,
    cards: Path,
    **extra: str,
) -> dict[str, str]:
    """The environment a worker or API process of these settings reads (LORALAB_*)."""
    return {
        **os.environ,
        "LORALAB_QUEUE__BROKER_URL": broker_url,
        "LORALAB_DB__URL": db_url,
        "LORALAB_STORAGE__RESULTS_DIR": str(results),
        "LORALAB_STORAGE__MODELS_DIR": str(models),
        "LORALAB_REGISTRY__CARD_DIR": str(cards),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }


def platform_settings(
    tmp: Path, *, broker_url: str, models: Path, secret: str, db_url: str | None = None
) -> Settings:
    """The settings of a stack under ``tmp``: results, cards and (by default) a SQLite file
    there, the given broker, models folder and signing secret."""
    from loralab.settings import Settings

    return Settings.model_validate(
        {
            "storage": {"results_dir": tmp / "results", "models_dir": models},
            "registry": {"card_dir": tmp / "cards"},
            "queue": {"broker_url": broker_url},
            "db": {"url": db_url or f"sqlite:///{tmp / 'platform.db'}"},
            "auth": {"secret_key": secret},
        }
    )


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """:func:`platform_env` of ``settings`` (broker, database, folders, signing secret)."""
    assert settings.storage.models_dir is not None, "a stack's settings name a models folder"
    return platform_env(
        broker_url=settings.queue.broker_url,
        db_url=settings.db_url,
        results=settings.storage.results_dir,
        models=settings.storage.models_dir,
        cards=settings.registry_card_dir,
        LORALAB_AUTH__SECRET_KEY=settings.auth.secret_key.get_secret_value(),
        **extra,
    )


@contextlib.contextmanager
def serve_in_process(app: Any) -> Iterator[str]:
    """``app`` under uvicorn in a daemon thread on a free port, for the ``with`` block (URL)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the API to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def start_worker(
    env: dict[str, str],
    cwd: Path,
    log: Path,
    *,
    name: str = "w0",
    queues: str = "cpu",
    concurrency: int = 1,
    loglevel: str = "INFO",
) -> subprocess.Popen[bytes]:
    """A whole Celery worker (parent + pool children) in its own process group."""
    args = ["-A", "loralab.entrypoints.worker.main", "worker", "-Q", queues]
    args += ["--concurrency", str(concurrency), "--loglevel", loglevel, "-n", f"{name}@%h"]
    return subprocess.Popen(
        [CELERY, *args],
        env=env,
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_heartbeat(env: dict[str, str], queue: str = "cpu", seconds: float = 120) -> None:
    """Until a worker announces ``queue`` in Redis: before it, the API refuses jobs for that
    queue (409 "no worker serves ...")."""
    from loralab.jobs.workers import RedisWorkers

    workers = RedisWorkers(env["LORALAB_QUEUE__BROKER_URL"], 30)
    wait_for(lambda: workers.serves(queue), seconds, f"a worker announcing the {queue} queue", 0.2)


def start_api(
    env: dict[str, str], cwd: Path, log: Path, port: int, workers: int = 1
) -> subprocess.Popen[bytes]:
    """``uvicorn loralab.entrypoints.api.main:app`` on ``port``, in its own process group."""
    args = ["loralab.entrypoints.api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    args += ["--timeout-keep-alive", "60"]  # a starved load generator may pause between calls
    return subprocess.Popen(
        [str(BIN / "uvicorn"), *args],
        env=env,
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the process and its children at once (SIGKILL: no warm shutdown, no acks)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def private_pg_database() -> Iterator[str]:
    """A migrated PostgreSQL database of its own (URL), dropped afterwards; skips the test
    when no server answers on 127.0.0.1:5432."""
    from tests.conftest import _pg_admin, _pg_create, _pg_drop

    from loralab.infra.migrate import upgrade_database

    admin = _pg_admin()
    name = _pg_create(admin)
    try:
        url = f"{PG_HOST_URL}/{name}"
        upgrade_database(url)
        yield url
    finally:
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]
