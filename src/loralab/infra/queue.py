"""Job queues: how a job id reaches a worker. The jobs table stays the truth; a queue only
carries ids, and sending an id twice is harmless (execution is leased and idempotent).
"""

from __future__ import annotations

from typing import Any, Protocol

RUN_JOB_TASK = "loralab.run_job"
QUEUES: tuple[str, ...] = ("cpu", "cuda", "mps")


class JobQueue(Protocol):
    """Sends a job id to the workers of one queue (cpu, cuda or mps)."""

    def enqueue(self, job_id: str, queue: str) -> None: ...


class CeleryJobQueue:
    """Sends task ``loralab.run_job(job_id)`` through a Celery app's broker."""

    def __init__(self, celery_app: Any) -> None:
        self.app = celery_app

    def enqueue(self, job_id: str, queue: str) -> None:
        """Publish the job id; the task id is the job id (one id to trace in logs)."""
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r} (known: {', '.join(QUEUES)})")
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue, task_id=job_id)
