"""An upload is accepted or refused as a whole: a token that expires while a long upload is
still streaming is refused (it is checked once the body has arrived), and neither a version,
nor a stored object, nor a temporary file is left behind. Also the other way round: a token
valid throughout registers the upload."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import jwt
import pytest
from tests.api.conftest import Platform, sign_in

from loralab.users.tokens import issue_token

BOUNDARY = "loralab-test-boundary"
ROWS = 30_000  # about 1.5 MB: larger than the 1 MB the form parser keeps in memory
CHUNKS = 16


def short_token(platform: Platform, seconds: int) -> str:
    """A token for alice that expires ``seconds`` from now."""
    client, found, _ = platform
    claims = jwt.decode(
        sign_in(client, "alice")["Authorization"].split()[1], options={"verify_signature": False}
    )
    subject = SimpleNamespace(
        id=claims["uid"], username="alice", role="user", token_version=claims["ver"]
    )
    lifetime = timedelta(minutes=found.settings.auth.token_minutes)
    issued = datetime.now(timezone.utc) - lifetime + timedelta(seconds=seconds)
    return issue_token(subject, found.settings.auth, now=issued)


def multipart_body(name: str) -> bytes:
    rows = "".join(
        f"the movie {i} was {'good' if i % 2 else 'bad'},{'positive' if i % 2 else 'negative'}\n"
        for i in range(ROWS)
    )
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n',
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\ntext,label\n{rows}\r\n",
        f"--{BOUNDARY}--\r\n",
    ]
    return "".join(parts).encode()


async def slowly(body: bytes, seconds: float) -> AsyncIterator[bytes]:
    size = len(body) // CHUNKS + 1
    for start in range(0, len(body), size):
        await asyncio.sleep(seconds / CHUNKS)
        yield body[start : start + size]


def upload_slowly(platform: Platform, token: str, name: str, seconds: float) -> httpx.Response:
    client, _, _ = platform

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post(
                "/datasets",
                content=slowly(multipart_body(name), seconds),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                },
                timeout=60,
            )

    return asyncio.run(send())


@pytest.fixture()
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the form parser spools large uploads to, private to this test."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def leftovers(platform: Platform, system_tmp: Path) -> list[Path]:
    store = platform[1].settings.dataset_store_dir
    return [*store.glob(".upload-*"), *system_tmp.iterdir()]


def test_a_token_that_expires_mid_upload_refuses_the_whole_upload(
    platform: Platform, system_tmp: Path
) -> None:
    _, found, _ = platform
    token = short_token(platform, seconds=2)
    started = time.time()
    response = upload_slowly(platform, token, "expiring", seconds=4.0)

    assert time.time() - started >= 3.5  # the body really was still streaming at expiry
    assert response.status_code == 401, response.text
    assert "expired" in response.json()["detail"]
    store = found.settings.dataset_store_dir
    assert not (store / "records" / "expiring.json").exists()
    assert leftovers(platform, system_tmp) == []
    objects = sorted((store / "objects").rglob("*.jsonl"))
    assert len(objects) == 1  # only the shared dataset of the fixture


def test_a_token_valid_throughout_registers_the_whole_upload(
    platform: Platform, system_tmp: Path
) -> None:
    response = upload_slowly(platform, short_token(platform, seconds=60), "lasting", seconds=1.0)

    assert response.status_code == 201, response.text
    assert response.json()["rows"] == ROWS
    assert leftovers(platform, system_tmp) == []
