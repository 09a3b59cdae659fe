"""Request limits counted in Redis, so every API process sees the same count.

A fixed window per (limit, subject): the first event of a window sets the key's expiry, one
Lua script counts and reads the time left atomically. When Redis cannot be reached, a limit
that ``fails_closed`` (sign-in) refuses and every other limit lets the request through; both
are logged.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from loralab.errors import TooManyRequests
from loralab.settings import LimitSettings, Settings

log = logging.getLogger("loralab.limits")

# KEYS[1]: counter; ARGV[1]: window seconds; ARGV[2]: 1 to count an event, 0 to only look.
_COUNT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


@dataclass(frozen=True)
class Limit:
    """At most ``most`` events per ``window`` seconds per subject."""

    name: str
    most: int
    window: int
    fails_closed: bool = False
    message: str = "too many requests; try again later"


class RateLimiter(Protocol):
    """Counts events per subject and refuses (TooManyRequests) past a limit."""

    def enforce(self, limit: Limit, subject: str) -> None:
        """Count one event; TooManyRequests with ``retry_after`` when over the limit."""
        ...

    def check(self, limit: Limit, subject: str) -> None:
        """TooManyRequests when the subject is already at the limit (counts nothing)."""
        ...

    def record(self, limit: Limit, subject: str) -> None:
        """Count one event (a failure), refusing nothing now."""
        ...

    def release(self, limit: Limit, subject: str) -> None:
        """Take back one event counted by ``enforce`` (an attempt that did not fail)."""
        ...


class RedisRateLimiter:
    """:class:`RateLimiter` over redis-py: one atomic script call per event."""

    def __init__(self, url: str, prefix: str, timeout: float = 0.5) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._script: Any = self._client.register_script(_COUNT)
        self._prefix = prefix

    def key(self, limit: Limit, subject: str) -> str:
        """The counter's key: the subject hashed (any text, bounded length)."""
        digest = hashlib.sha256(subject.encode("utf-8", "backslashreplace")).hexdigest()[:32]
        return f"{self._prefix}{limit.name}:{digest}"

    def _count(self, limit: Limit, subject: str, add: int) -> tuple[int, int] | None:
        """(count, seconds left) after adding ``add``; None when Redis cannot be reached."""
        try:
            count, ttl = self._script(keys=[self.key(limit, subject)], args=[limit.window, add])
        except Exception as err:  # noqa: BLE001 - the store is down: the limit's policy decides
            log.warning("rate-limit store unreachable (%s): %s", limit.name, type(err).__name__)
            return None
        return int(count), max(1, int(ttl))

    def _refuse_if(self, limit: Limit, found: tuple[int, int] | None, over: int) -> None:
        if found is None:
            if limit.fails_closed:
                raise TooManyRequests(
                    f"{limit.message} (the limit store is unreachable)", limit.window
                )
            return
        count, ttl = found
        if count > over:
            raise TooManyRequests(limit.message, ttl)

    def enforce(self, limit: Limit, subject: str) -> None:
        self._refuse_if(limit, self._count(limit, subject, 1), limit.most)

    def check(self, limit: Limit, subject: str) -> None:
        self._refuse_if(limit, self._count(limit, subject, 0), limit.most - 1)

    def record(self, limit: Limit, subject: str) -> None:
        self._count(limit, subject, 1)

    def release(self, limit: Limit, subject: str) -> None:
        self._count(limit, subject, -1)


@dataclass(frozen=True)
class Limits:
    """Every limit of the platform, from settings."""

    login_address: Limit
    old_password: Limit
    train: Limit
    upload: Limit
    predict: Limit


def limits_of(settings: LimitSettings) -> Limits:
    """The platform's limits as ``settings.limits`` sets them."""
    window = settings.window_seconds
    return Limits(
        login_address=Limit(
            "login-address",
            settings.login_failures_per_address,
            settings.login_window_seconds,
            fails_closed=True,
            message="too many failed sign-ins from this address; try again later",
        ),
        old_password=Limit(
            "old-password",
            settings.password_failures_per_user,
            settings.password_window_seconds,
            message="too many wrong old passwords; try again later",
        ),
        train=Limit("train", settings.train_per_user, window, message="too many jobs submitted"),
        upload=Limit("upload", settings.uploads_per_user, window, message="too many uploads"),
        predict=Limit("predict", settings.predict_per_user, window, message="too many predictions"),
    )


def redis_limiter(settings: Settings) -> RedisRateLimiter:
    """The limiter on ``limits.redis_url`` (or the broker's Redis)."""
    url = settings.limits.redis_url or settings.queue.broker_url
    return RedisRateLimiter(url, settings.limits.prefix)
