"""Job queues: how a job id reaches a worker. The jobs table stays the truth; a queue only
carries ids, and sending an id twice is harmless (execution is leased and idempotent).

The Celery queue also leaves a marker per sent job in the broker's Redis, kept as long as the
broker's visibility timeout: a job whose marker is gone was forgotten by the broker (Redis
restarted without its data) and is sent again by the recovery sweep; one whose marker is there
is still waiting in the broker and is not sent twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

RUN_JOB_TASK = "loralab.run_job"
QUEUES: tuple[str, ...] = ("cpu", "cuda", "mps")
SENT_MARKER = "loralab:sent:"
DEFAULT_MARKER_SECONDS = 3600


class JobQueue(Protocol):
    """Sends a job id to the workers of one queue (cpu, cuda or mps)."""

    def enqueue(self, job_id: str, queue: str) -> None: ...


@runtime_checkable
class TrackedQueue(Protocol):
    """A queue that can tell which sent jobs the broker no longer holds."""

    def forgotten(self, job_ids: Sequence[str]) -> set[str]: ...


class CeleryJobQueue:
    """Sends task ``loralab.run_job(job_id)`` through a Celery app's broker."""

    def __init__(self, celery_app: Any) -> None:
        self.app = celery_app
        options = celery_app.conf.broker_transport_options or {}
        self.marker_seconds = int(options.get("visibility_timeout", DEFAULT_MARKER_SECONDS))
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(
                str(self.app.conf.broker_url), socket_timeout=2, socket_connect_timeout=2
            )
        return self._redis

    def enqueue(self, job_id: str, queue: str) -> None:
        """Publish the job id (the task id is the job id: one id to trace in logs), then mark
        it sent in the broker's Redis."""
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r} (known: {', '.join(QUEUES)})")
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue, task_id=job_id)
        self._client().set(SENT_MARKER + job_id, "1", ex=self.marker_seconds)

    def forgotten(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` without a sent marker in the broker's Redis."""
        if not job_ids:
            return set()
        held = self._client().mget([SENT_MARKER + job_id for job_id in job_ids])
        return {job_id for job_id, mark in zip(job_ids, held, strict=True) if mark is None}
