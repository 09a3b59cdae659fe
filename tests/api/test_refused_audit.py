"""Refused requests on protected routes leave one audit record each: a malformed body (422), a
user on an admin route (403), a missing or forged token (401). The record names the route and
the reason, never the token or the refused value."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Platform, sign_in

from loralab.bootstrap import Services


def _records(found: Services) -> list[Any]:
    records, _ = found.audit.query(limit=500)
    return records


def _new_since(found: Services, before: int) -> list[Any]:
    return _records(found)[: len(_records(found)) - before]  # newest first


def test_a_malformed_train_body_leaves_one_refused_record(platform: Platform) -> None:
    client, found, queue = platform
    alice = sign_in(client, "alice")
    before = len(_records(found))
    answer = client.post(
        "/train", json={"dataset": "reviews", "seed": "secret-looking-value"}, headers=alice
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_input"
    assert "secret-looking-value" not in answer.text  # the refused value is not echoed
    new = _new_since(found, before)
    assert len(new) == 1, [(r.action, r.outcome) for r in new]
    record = new[0]
    assert (record.action, record.outcome, record.username) == (
        "refused POST /train",
        "failed",
        "alice",
    )
    assert record.detail["status"] == 422 and "seed" in record.detail["reason"]
    assert "secret-looking-value" not in str(record.detail)
    assert not queue.sent


def test_a_body_that_is_not_json_is_refused_on_the_record_too(platform: Platform) -> None:
    client, found, _ = platform
    alice = sign_in(client, "alice")
    before = len(_records(found))
    answer = client.post(
        "/train", content=b"{not json", headers={**alice, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    new = _new_since(found, before)
    assert [(r.action, r.username) for r in new] == [("refused POST /train", "alice")]


def test_a_user_on_an_admin_route_leaves_one_denied_record(platform: Platform) -> None:
    client, found, _ = platform
    bob = sign_in(client, "bob")
    before = len(_records(found))
    assert client.get("/audit/logs", headers=bob).status_code == 403
    new = _new_since(found, before)
    assert len(new) == 1, [(r.action, r.outcome) for r in new]
    assert (new[0].outcome, new[0].username) == ("denied", "bob")
    assert "/audit/logs" in new[0].action


def test_a_forged_or_missing_token_leaves_one_denied_record_without_the_token(
    platform: Platform,
) -> None:
    client, found, _ = platform
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyb290In0.forged-signature"
    for headers in ({"Authorization": f"Bearer {forged}"}, {}):
        before = len(_records(found))
        assert client.get("/tasks", headers=headers).status_code == 401
        new = _new_since(found, before)
        assert [(r.action, r.outcome, r.username) for r in new] == [
            ("refused GET /tasks", "denied", None)
        ]
        assert forged not in str(new[0].detail)
    assert found.audit.verify().ok


def test_anonymous_routes_and_allowed_requests_leave_no_refusal(platform: Platform) -> None:
    client, found, _ = platform
    before = len(_records(found))
    assert client.get("/health/live").status_code == 200
    assert client.post("/login", json={"username": ""}).status_code == 422  # not signed in
    assert not [r for r in _new_since(found, before) if r.action.startswith("refused")]
