"""Which queues live workers serve: each worker announces itself with a heartbeat in Redis.

A worker writes one key, ``loralab:worker:<name>``, holding the queues it consumes, with a TTL
of ``queue.worker_ttl_seconds``, and rewrites it from a thread every third of that. A worker
that dies (even by SIGKILL) stops writing and its key expires; one that stops cleanly stops the
refresh and lets its key run out too, so a restart within the TTL (a deploy) never looks like
a platform without workers. Submitting asks :meth:`WorkerDirectory.serves` before it queues.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from loralab.infra.threads import every
from loralab.settings import Settings

log = logging.getLogger("loralab.jobs")
PREFIX = "loralab:worker:"


class WorkerDirectory(Protocol):
    def serves(self, queue: str) -> bool | None:
        """True when a live worker consumes ``queue``; None when nobody can tell (Redis down)."""
        ...


class RedisWorkers:
    """Worker heartbeats in Redis (by default the broker's): announce, and ask who serves."""

    def __init__(self, url: str, ttl_seconds: float) -> None:
        self.url = url
        self.ttl = max(1, round(ttl_seconds))
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisWorkers:
        return cls(settings.queue.broker_url, settings.queue.worker_ttl_seconds)

    def client(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=2, socket_connect_timeout=2
            )
        return self._client

    def announce(self, name: str, queues: Iterable[str]) -> None:
        """Write (or refresh) this worker's key: its queues, for ``ttl`` seconds."""
        value = json.dumps({"queues": sorted(set(queues)), "at": time.time()})
        self.client().set(PREFIX + name, value, ex=self.ttl)

    def live(self) -> dict[str, list[str]]:
        """Live workers and the queues each serves."""
        found: dict[str, list[str]] = {}
        for key in self.client().scan_iter(match=PREFIX + "*", count=200):
            raw = self.client().get(key)
            if raw is None:
                continue  # expired between the scan and the read
            try:
                queues = json.loads(raw).get("queues", [])
            except (ValueError, AttributeError):
                continue
            name = key.decode() if isinstance(key, bytes) else str(key)
            found[name.removeprefix(PREFIX)] = [str(q) for q in queues]
        return found

    def serves(self, queue: str) -> bool | None:
        try:
            return any(queue in queues for queues in self.live().values())
        except Exception as err:  # noqa: BLE001 - Redis down: unknown, the broker path decides
            log.warning("cannot read worker heartbeats: %s", err)
            return None


class Heartbeat:
    """Announce a worker now and every ``ttl / 3`` seconds on a thread until :meth:`stop`."""

    def __init__(self, workers: RedisWorkers, name: str, queues: Iterable[str]) -> None:
        self.workers, self.name, self.queues = workers, name, sorted(set(queues))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._thread = every(
            max(0.2, self.workers.ttl / 3),
            lambda: self.workers.announce(self.name, self.queues),
            self._stop,
            name="loralab-announce",
            failure="worker heartbeat failed",  # a Redis hiccup: try again next beat
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
