"""Job queues: how a job id reaches a worker. The jobs table stays the truth; a queue only
carries ids, and sending an id twice is harmless (execution is leased and idempotent).

The Celery queue also leaves a marker per sent job in the broker's Redis, kept as long as the
broker's visibility timeout: a job whose marker is gone was forgotten by the broker (Redis
restarted without its data) and is sent again by the recovery sweep; one whose marker is there
is still waiting in the broker and is not sent twice.

The markers are the members of one sorted set (``loralab:sent``, scored by when each expires),
not a key per job: a key per job filled the broker's keyspace with one key per job of the last
hour, and every scan of it (the worker directory reads worker heartbeats with SCAN, at every
submit) grew with it: 15 ms of CPU and 150 round trips per submit at 30,000 markers. Markers
written as keys by an older version (``loralab:sent:<id>``) are still read until they expire.
Expiry times come from the sending machine's clock: a skew of seconds against an hour's marks.

A marker says a job was sent, not that the broker still holds it: Redis hands a message to a
BRPOP it still counts as waiting even when the worker behind it was killed a moment before (its
socket not yet closed), and the message is gone. So a job with a live marker counts as held only
while its message is in the queue's lists or in the broker's unacknowledged messages (a worker
took it and has not finished it); the sweep sends the others again. Sending twice is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

RUN_JOB_TASK = "loralab.run_job"
QUEUES: tuple[str, ...] = ("cpu", "cuda", "mps")
SENT_SET = "loralab:sent"  # sorted set: job id -> unix time its marker expires
SENT_MARKER = "loralab:sent:"  # the key per job of older versions: read, never written
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
        it sent in the broker's Redis (one round trip: the mark, expired marks dropped, the
        set's own expiry renewed)."""
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r} (known: {', '.join(QUEUES)})")
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue, task_id=job_id)
        now = time.time()
        marks = self._client().pipeline(transaction=False)
        marks.zadd(SENT_SET, {job_id: now + self.marker_seconds})
        marks.zremrangebyscore(SENT_SET, "-inf", now)
        marks.expire(SENT_SET, self.marker_seconds)
        marks.execute()

    def forgotten(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` without a live sent marker in the broker's Redis."""
        if not job_ids:
            return set()
        reads = self._client().pipeline(transaction=False)
        reads.zmscore(SENT_SET, list(job_ids))
        reads.mget([SENT_MARKER + job_id for job_id in job_ids])
        expiries, old_marks = reads.execute()
        now = time.time()
        unmarked = {
            job_id
            for job_id, expiry, old in zip(job_ids, expiries, old_marks, strict=True)
            if (expiry is None or expiry <= now) and old is None
        }
        marked = [job_id for job_id in job_ids if job_id not in unmarked]
        return unmarked | (set(marked) - self._in_broker(marked))

    def _in_broker(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` whose message the broker holds: waiting in a queue's
        lists (one per priority step) or taken by a worker and not yet acknowledged. Read
        only when a job looks lost (the recovery sweep), so reading whole lists is cheap."""
        if not job_ids:
            return set()
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        options = self.app.conf.broker_transport_options or {}
        prefix = str(options.get("global_keyprefix", ""))
        steps = options.get("priority_steps", PRIORITY_STEPS)
        lists = [
            prefix + (queue if step == 0 else f"{queue}{Channel.sep}{step}")
            for queue in QUEUES
            for step in steps
        ]
        reads = self._client().pipeline(transaction=False)
        for key in lists:
            reads.lrange(key, 0, -1)
        reads.hvals(prefix + str(options.get("unacked_key", Channel.unacked_key)))
        messages = b"\n".join(m for found in reads.execute() for m in found)
        return {job_id for job_id in job_ids if job_id.encode() in messages}
