"""The shared services of several machines, for tests that play them as separate processes:
an S3-compatible server (moto) and an MLflow tracking server whose artifact store is a bucket
on it (``--serve-artifacts``: clients reach artifacts through ``mlflow-artifacts:``).

Every server gets a free port and its own process group, and is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from tests.integration.services import BIN, PG_HOST_URL, free_port, kill_group, wait_for

BUCKET = "loralab-artifacts"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto takes any credentials
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class SharedStack:
    s3_url: str  # the S3 endpoint (moto)
    tracking_uri: str  # the MLflow server
    artifacts: str  # where the server keeps artifacts: s3://BUCKET/mlartifacts


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[str]:
    """``python -m moto.server`` on a free port with an empty bucket BUCKET (its URL)."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **FAKE_AWS}
    process = _start(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        folder / "moto.log",
        env,
    )
    try:
        wait_for(lambda: _answers(f"{url}/moto-api/"), 60, "the S3 server (moto) to answer", 0.2)
        session = boto3.session.Session(
            aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
        )
        session.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        kill_group(process)


@contextlib.contextmanager
def mlflow_server(folder: Path, backend_uri: str, s3_url: str) -> Iterator[SharedStack]:
    """``mlflow server`` with ``backend_uri`` (PostgreSQL or SQLite) and its artifacts in
    s3://BUCKET/mlartifacts on ``s3_url``, served to clients (``--serve-artifacts``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts = f"s3://{BUCKET}/mlartifacts"
    env = {**os.environ, **FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": s3_url}
    args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--backend-store-uri", backend_uri, "--serve-artifacts"]
    args += ["--artifacts-destination", artifacts, "--workers", "1"]
    process = _start(args, folder / "mlflow-server.log", env)
    try:
        wait_for(lambda: _answers(f"{url}/health"), 120, "the MLflow server to answer", 0.2)
        yield SharedStack(s3_url, url, artifacts)
    finally:
        kill_group(process)


@contextlib.contextmanager
def mlflow_pg_database() -> Iterator[str]:
    """An empty PostgreSQL database for an MLflow server's backend store (MLflow migrates it
    itself: loralab's migrations would clash with its ``alembic_version``), as MLflow's
    SQLAlchemy store reads it (psycopg 3); dropped afterwards. Skips without a server."""
    from tests.conftest import _pg_admin, _pg_create, _pg_drop

    admin = _pg_admin()
    name = _pg_create(admin)
    try:
        yield f"{PG_HOST_URL.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        _pg_drop(admin, name)
        admin.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def shared_stack(folder: Path, backend_uri: str) -> Iterator[SharedStack]:
    """The S3 server and the MLflow server in front of it."""
    folder.mkdir(parents=True, exist_ok=True)
    with s3_server(folder) as s3_url, mlflow_server(folder, backend_uri, s3_url) as stack:
        yield stack


def bucket_keys(stack: SharedStack, prefix: str = "") -> list[str]:
    """The object keys under ``prefix`` in the bucket (what the artifact store holds)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=stack.s3_url,
        aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
    )
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys
