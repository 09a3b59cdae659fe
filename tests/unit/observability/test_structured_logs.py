"""Structured logs: JSON or text, request/job context on each line, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from loralab.observability.logs import (
    bind_request,
    configure_logging,
    job_context,
    json_wanted,
)
from loralab.settings import LogSettings, Settings

SECRET = "a-signing-secret-that-must-never-be-logged-0123456789"
PASSWORD = "hunter2-bootstrap-password"
Captured = tuple[io.StringIO, Settings]


@pytest.fixture()
def capture() -> Iterator[tuple[io.StringIO, Settings]]:
    stream = io.StringIO()
    settings = Settings.model_validate(
        dict(
            auth={"secret_key": SECRET, "bootstrap_password": PASSWORD},
            db={"url": "postgresql://loralab:dbpass-777@db:5432/loralab"},
            log={"format": "json"},
        )
    )
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(settings, "api", stream)
    try:
        yield stream, settings
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        bind_request(None)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_service_and_request_id(capture: Captured) -> None:
    stream, _ = capture
    bind_request("req-42")
    logging.getLogger("loralab.test").info("job %s queued", "abc")
    (line,) = lines(stream)
    assert line["message"] == "job abc queued"
    assert line["level"] == "INFO" and line["logger"] == "loralab.test"
    assert line["service"] == "api" and line["request_id"] == "req-42"
    assert line["job_id"] is None and "time" in line


def test_job_context_adds_job_id_and_attempt_then_restores(capture: Captured) -> None:
    stream, _ = capture
    with job_context("job-1", 2):
        logging.getLogger("loralab.jobs").info("training")
    logging.getLogger("loralab.jobs").info("idle")
    first, second = lines(stream)
    assert (first["job_id"], first["attempt"]) == ("job-1", 2)
    assert (second["job_id"], second["attempt"]) == (None, None)


def test_secrets_and_secret_shaped_text_are_redacted(capture: Captured) -> None:
    stream, _ = capture
    log = logging.getLogger("loralab.test")
    log.warning("key is %s", SECRET)
    log.warning("bootstrap %s", PASSWORD)
    log.warning("connect postgresql://loralab:dbpass-777@db:5432/x failed")
    log.warning("header Authorization: Bearer eyJhbGciOi.abc.def")
    log.warning('body {"username": "bob", "password": "s3cret-pw"}')
    try:
        raise RuntimeError(f"token={SECRET}")
    except RuntimeError:
        log.exception("crashed")
    text = stream.getvalue()
    for leaked in (SECRET, PASSWORD, "dbpass-777", "eyJhbGciOi", "s3cret-pw"):
        assert leaked not in text
    assert text.count("[redacted]") >= 6
    assert '"username": "bob"' in text.replace('\\"', '"')  # the rest of the line stays


def test_text_format_is_readable_with_context_tags() -> None:
    stream = io.StringIO()
    settings = Settings.model_validate(dict(auth={"secret_key": SECRET}, log={"format": "text"}))
    root = logging.getLogger()
    handler = configure_logging(settings, "worker", stream)
    try:
        with job_context("job-9", 1):
            logging.getLogger("loralab.jobs").warning("lease lost")
        logging.getLogger("loralab.jobs").warning("no context")
    finally:
        root.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING loralab.jobs [job_id=job-9 attempt=1] lease lost")
    assert second.endswith("WARNING loralab.jobs no context")


def test_configuring_twice_keeps_one_handler() -> None:
    settings = Settings.model_validate(dict(auth={"secret_key": SECRET}))
    root = logging.getLogger()
    first = configure_logging(settings, "api", io.StringIO())
    second = configure_logging(settings, "api", io.StringIO())
    try:
        assert first not in root.handlers and second in root.handlers
    finally:
        root.removeHandler(second)


def test_auto_is_json_only_inside_a_container(tmp_path: Path) -> None:
    marker = tmp_path / ".dockerenv"
    assert not json_wanted(LogSettings(format="auto"), [marker])
    marker.touch()
    assert json_wanted(LogSettings(format="auto"), [marker])
    assert not json_wanted(LogSettings(format="text"), [marker])
    assert json_wanted(LogSettings(format="json"), [])


def test_uvicorn_lines_go_through_the_same_handler() -> None:
    stream = io.StringIO()
    settings = Settings.model_validate(dict(auth={"secret_key": SECRET}, log={"format": "json"}))
    server = logging.getLogger("uvicorn.error")
    server.addHandler(logging.StreamHandler(io.StringIO()))  # as uvicorn's log config does
    server.propagate = False
    root = logging.getLogger()
    handler = configure_logging(settings, "serve", stream)
    try:
        server.warning("Started server process")
    finally:
        root.removeHandler(handler)
    (line,) = lines(stream)
    assert line["logger"] == "uvicorn.error" and line["service"] == "serve"
