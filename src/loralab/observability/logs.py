"""Structured logs: one line per event, JSON (``LORALAB_LOG__FORMAT=json``, the default inside
a container) or readable text, with the request id (API) or the job id and attempt (worker) of
the work that logged it, and never a secret.

Context travels in :mod:`contextvars`: the HTTP middleware binds the request id, the worker
binds the job id when a task starts and the attempt once the job is claimed. A redacting filter
removes the configured secrets (signing key, bootstrap password, database password) and
anything shaped like a bearer token or a ``password=...`` pair from every line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from loralab.settings import LogSettings, Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("loralab_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("loralab_job_id", default=None)
ATTEMPT: ContextVar[int | None] = ContextVar("loralab_attempt", default=None)
CONTEXT_FIELDS = ("request_id", "job_id", "attempt")
REDACTED = "[redacted]"
CONTAINER_MARKERS = (
    Path("/.dockerenv"),
    Path("/run/.containerenv"),
    Path("/var/run/secrets/kubernetes.io/serviceaccount"),
)
# "Bearer <token>", and password / secret / token / api_key = or : a value
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:password|passwd|secret|secret_key|token|access_token|api_key)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+"
    ),
    re.compile(r"(?i)(://[^:/@\s]+:)[^@\s]+(@)"),  # user:password@host in URLs
)
_HANDLER_MARK = "_loralab_handler"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def bind_request(request_id: str | None) -> None:
    """The request id of what this context logs from now on (the API middleware calls it)."""
    REQUEST_ID.set(request_id)


def bind_job(job_id: str | None, attempt: int | None = None) -> None:
    """The job (and attempt) of what this context logs from now on (the worker calls it)."""
    JOB_ID.set(job_id)
    ATTEMPT.set(attempt)


@contextmanager
def job_context(job_id: str, attempt: int | None = None) -> Iterator[None]:
    """Log lines inside carry ``job_id`` (and ``attempt``); the previous values come back."""
    job, tries = JOB_ID.set(job_id), ATTEMPT.set(attempt)
    try:
        yield
    finally:
        JOB_ID.reset(job)
        ATTEMPT.reset(tries)


class ContextFilter(logging.Filter):
    """Adds ``service``, ``request_id``, ``job_id`` and ``attempt`` to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        record.attempt = ATTEMPT.get()
        return True


class RedactFilter(logging.Filter):
    """Replaces known secrets and secret-shaped text in the message (and exception text)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(
                lambda m: m.group(1) + REDACTED + (m.group(2) if m.re.groups > 1 else ""), text
            )
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO loralab.jobs [job=… attempt=1] message``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        return line.replace(" | ", f" [{tags}] " if tags else " ", 1)


def secrets_of(settings: Settings) -> list[str]:
    """The secret values this process knows from its settings."""
    found = [settings.auth.secret_key.get_secret_value()]
    if settings.auth.bootstrap_password is not None:
        found.append(settings.auth.bootstrap_password.get_secret_value())
    match = re.search(r"://[^:/@]+:([^@]+)@", settings.db.url or "")
    if match:
        found.append(match.group(1))
    return found


def json_wanted(config: LogSettings, markers: Iterable[Path] = CONTAINER_MARKERS) -> bool:
    """JSON when asked, or when ``auto`` and the process runs in a container."""
    if config.format != "auto":
        return config.format == "json"
    return any(marker.exists() for marker in markers)


def make_formatter(json_lines: bool) -> logging.Formatter:
    if json_lines:
        return JsonFormatter(
            "{asctime}{levelname}{name}{message}{service}{request_id}{job_id}{attempt}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return TextFormatter("%(asctime)s %(levelname)s %(name)s | %(message)s")


def configure_logging(settings: Settings, service: str, stream: Any = None) -> logging.Handler:
    """One handler on the root logger for ``service`` (api, worker, serve, ui); calling it again
    replaces the handler it installed before. Returns the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter(service))
    handler.addFilter(RedactFilter(secrets_of(settings)))
    handler.setFormatter(make_formatter(json_wanted(settings.log)))
    root.addHandler(handler)
    root.setLevel(settings.log.level)
    adopt_server_loggers()
    return handler


def adopt_server_loggers() -> None:
    """uvicorn's loggers write through the root handler too (same format, same redaction)
    instead of the plain handlers uvicorn's own log config gave them."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
