"""Query values past what a database can hold are refused (422), never a 500: a page offset of
2**63 or 2**64 overflows SQLite's INTEGER and PostgreSQL's BIGINT."""

from __future__ import annotations

import pytest
from tests.api.conftest import Platform, sign_in


@pytest.mark.parametrize("path", ["/tasks", "/audit/logs", "/models/search"])
@pytest.mark.parametrize("offset", [2**63, 2**64, 1_000_000_001])
def test_a_page_offset_past_the_bound_is_refused(
    platform: Platform, path: str, offset: int
) -> None:
    client, _, _ = platform
    answer = client.get(f"{path}?offset={offset}", headers=sign_in(client, "root"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["query", "offset"]


def test_a_json_body_nested_too_deep_is_a_client_error(platform: Platform) -> None:
    client, _, queue = platform
    answer = client.post(
        "/train",
        content=b"[" * 50_000 + b"]" * 50_000,
        headers={**sign_in(client, "alice"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert not queue.sent


@pytest.mark.parametrize("url", ["/audit/logs?user=%00", "/tasks?state=a%00b", "/datasets/x%00@1"])
def test_a_nul_in_the_url_is_refused_before_any_database_sees_it(
    platform: Platform, url: str
) -> None:
    client, _, _ = platform  # PostgreSQL text cannot hold NUL: a query with one would fail there
    answer = client.get(url, headers=sign_in(client, "root"))
    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.json()["detail"]
