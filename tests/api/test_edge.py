"""The API's edge (issue 11): hostile text, who the client is, request limits counted in the
real Redis (127.0.0.1:6379, a key prefix per test), honest health, /metrics for monitoring
only, and jobs accepted while the broker is down."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers
from tests.api.conftest import PASSWORD, FakeQueue, Platform, settings_for, sign_in
from tests.conftest import make_rows, write_csv

from loralab.bootstrap import build_services
from loralab.datasets import service as datasets
from loralab.entrypoints.api.app import create_app
from loralab.entrypoints.api.middleware import client_address, trusted_networks
from loralab.infra.db import User
from loralab.settings import LimitSettings, ObservabilitySettings, QueueSettings, Settings
from loralab.users.tokens import issue_token

JOB = {"train_file": "reviews@latest", "base_model": "tiny-bert", "max_steps": 2}
DOWN = "redis://127.0.0.1:1/0"  # nothing listens there


def json_routes(app) -> list[tuple[str, str]]:
    """Every operation that takes a JSON body, from the OpenAPI document."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path))
    return found


def _fill(path: str) -> str:
    return path.replace("{task_id}", "x").replace("{username}", "alice").replace("{ref}", "a@v1")


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"username": "\\ud800", "password": "x"}', "surrogate"),
        (b'{"text": "a\\udfffb"}', "surrogate"),
        (b'{"username": "a\\u0000b", "password": "x"}', "NUL"),
        (b'{"username": "\xff\xfe", "password": "x"}', "UTF-8"),
    ],
)
def test_text_no_database_can_hold_is_a_422_on_every_json_route(
    platform: Platform, body: bytes, says: str
) -> None:
    client, _, _ = platform
    root = sign_in(client, "root")
    routes = json_routes(client.app)
    assert ("POST", "/login") in routes and ("POST", "/train") in routes
    for method, path in routes:
        for who in ({}, root):
            headers = {**who, "Content-Type": "application/json"}
            answer = client.request(method, _fill(path), content=body, headers=headers)
            assert answer.status_code == 422, (method, path, answer.status_code, answer.text)
            assert says in answer.json()["detail"] and answer.json()["error"] == "invalid_input"


def test_a_surrogate_pair_is_plain_unicode_and_passes(platform: Platform) -> None:
    client, _, _ = platform
    body = b'{"username": "\\ud83d\\ude00nobody", "password": "whatever-it-is"}'
    answer = client.post("/login", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 401  # an emoji is text: refused as a bad sign-in, not a 500


def test_forwarding_headers_count_only_from_trusted_proxies() -> None:
    spoofed = Headers({"x-forwarded-for": "6.6.6.6", "forwarded": "for=7.7.7.7"})
    assert client_address("10.0.0.5", spoofed, ()) == "10.0.0.5"  # none trusted by default
    assert client_address("10.0.0.5", spoofed, trusted_networks(["10.0.0.9"])) == "10.0.0.5"
    proxy = trusted_networks(["10.0.0.0/24"])
    chain = Headers({"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.7"})
    assert client_address("10.0.0.5", chain, proxy) == "1.2.3.4"  # nearest untrusted hop
    assert client_address("10.0.0.5", Headers({"forwarded": 'for="[2001:db8::1]"'}), proxy) == (
        "2001:db8::1"
    )
    assert client_address("10.0.0.5", Headers({}), proxy) == "10.0.0.5"


def _failed_logins(client: TestClient, names: list[str], **headers: str) -> list[int]:
    return [
        client.post(
            "/login", json={"username": n, "password": "wrong"}, headers=headers
        ).status_code
        for n in names
    ]


def _platform_with(tmp: Path, tiny_bert: Path, queue: FakeQueue | None = None, **parts):
    settings = settings_for(tmp, tiny_bert.parent).model_copy(update=parts)
    found = build_services(settings, queue=queue or FakeQueue())
    app = create_app(settings, found)
    return app, found


def test_one_address_trying_many_names_is_limited_whatever_header_it_sends(
    tmp_path: Path, tiny_bert: Path
) -> None:
    limits = LimitSettings(prefix=f"loralab:test:{uuid.uuid4().hex}:", login_failures_per_address=4)
    app, found = _platform_with(tmp_path, tiny_bert, limits=limits)
    found.users.create_user("alice", PASSWORD, "user")
    with TestClient(app, client=("127.0.0.1", 5000)) as client:
        codes = [
            client.post(
                "/login",
                json={"username": f"user{i}", "password": "wrong"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},  # a new "client" every time
            ).status_code
            for i in range(6)
        ]
        assert codes == [401, 401, 401, 401, 429, 429]
        refused = client.post("/login", json={"username": "alice", "password": PASSWORD})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    again = create_app(found.settings, build_services(found.settings, queue=FakeQueue()))
    with TestClient(again, client=("127.0.0.2", 5000)) as other:  # another address: not limited
        assert other.post("/login", json={"username": "alice", "password": PASSWORD}).is_success


def test_two_api_processes_share_one_count(tmp_path: Path, tiny_bert: Path) -> None:
    limits = LimitSettings(prefix=f"loralab:test:{uuid.uuid4().hex}:", train_per_user=3)
    first, found = _platform_with(tmp_path, tiny_bert, limits=limits)
    second = create_app(found.settings, build_services(found.settings, queue=FakeQueue()))
    datasets.register_dataset(found.settings, "reviews", write_csv(tmp_path / "r.csv",
                              make_rows(40)), user="ops")  # fmt: skip
    found.users.create_user("alice", PASSWORD, "user")
    with TestClient(first) as one, TestClient(second) as two:
        alice = sign_in(one, "alice")
        bad = {**JOB, "max_steps": 0}  # refused after counting: floods of bad jobs count too
        codes = [c.post("/train", json=bad, headers=alice).status_code for c in (one, two, one)]
        assert codes == [422, 422, 422]
        flood = two.post("/train", json=JOB, headers=alice)
        assert flood.status_code == 429 and int(flood.headers["Retry-After"]) >= 1
        assert one.post("/train", json=JOB, headers=alice).status_code == 429


def test_uploads_predictions_and_old_password_guesses_are_limited(
    tmp_path: Path, tiny_bert: Path
) -> None:
    limits = LimitSettings(
        prefix=f"loralab:test:{uuid.uuid4().hex}:",
        uploads_per_user=1,
        predict_per_user=2,
        password_failures_per_user=2,
    )
    app, found = _platform_with(tmp_path, tiny_bert, limits=limits)
    found.users.create_user("alice", PASSWORD, "user")
    with TestClient(app) as client:
        alice = sign_in(client, "alice")
        files = {"file": ("a.csv", b"text,label\nx,1\ny,0\n", "text/csv")}
        client.post("/datasets", data={"name": "mine"}, files=files, headers=alice)
        again = client.post("/datasets", data={"name": "mine"}, files=files, headers=alice)
        assert again.status_code == 429 and "Retry-After" in again.headers
        texts = [client.post("/predict", json={"text": "hi"}, headers=alice) for _ in range(3)]
        assert [t.status_code == 429 for t in texts] == [False, False, True]
        wrong = {"old_password": "not-my-password-at-all", "new_password": "a-new-password-1"}
        guesses = [client.post("/me/password", json=wrong, headers=alice) for _ in range(3)]
        assert [g.status_code for g in guesses] == [403, 403, 429]
        right = {"old_password": PASSWORD, "new_password": "a-new-password-1"}
        assert client.post("/me/password", json=right, headers=alice).status_code == 429


def test_with_redis_down_sign_in_fails_closed_and_the_rest_open(
    tmp_path: Path, tiny_bert: Path
) -> None:
    limits = LimitSettings(redis_url=DOWN, predict_per_user=1)
    app, found = _platform_with(tmp_path, tiny_bert, limits=limits)
    found.users.create_user("alice", PASSWORD, "user")
    with TestClient(app) as client:
        refused = client.post("/login", json={"username": "alice", "password": PASSWORD})
        assert refused.status_code == 429 and "unreachable" in refused.json()["detail"]
        with found.db.session() as session:
            user = session.query(User).filter_by(username="alice").one()
            alice = {"Authorization": f"Bearer {issue_token(user, found.settings.auth)}"}
        codes = {client.post("/predict", json={"text": "hi"}, headers=alice).status_code
                 for _ in range(3)}  # fmt: skip
        assert 429 not in codes


def test_health_splits_liveness_from_readiness(tmp_path: Path, tiny_bert: Path) -> None:
    app, _ = _platform_with(tmp_path, tiny_bert, queue=FakeQueue())
    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["broker"] == "ok"
    broken = settings_for(tmp_path / "b", tiny_bert.parent)
    broken = broken.model_copy(update={"queue": QueueSettings(broker_url=DOWN)})
    app = create_app(broken, build_services(broken, queue=FakeQueue()))
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "degraded", "database": "ok", "broker": "down"}
        assert client.get("/health").json()["status"] == "degraded"


def test_metrics_need_the_token_or_a_loopback_peer(tmp_path: Path, tiny_bert: Path) -> None:
    token = "a-scraper-token-" + uuid.uuid4().hex
    observability = ObservabilitySettings(metrics_token=token)  # type: ignore[arg-type]
    app, _ = _platform_with(tmp_path, tiny_bert, observability=observability)
    with TestClient(app, client=("127.0.0.1", 5000)) as client:
        assert client.get("/metrics").status_code == 403  # with a token set, even loopback
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        good = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200 and "loralab_http_requests_total" in good.text
    plain, found = _platform_with(tmp_path / "p", tiny_bert)
    with TestClient(plain, client=("127.0.0.1", 5000)) as local:
        assert local.get("/metrics").status_code == 200
    again = create_app(found.settings, build_services(found.settings, queue=FakeQueue()))
    with TestClient(again, client=("198.51.100.7", 5000)) as remote:
        spoofed = remote.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert spoofed.status_code == 403


class DownQueue(FakeQueue):
    def enqueue(self, job_id: str, queue: str) -> None:
        raise ConnectionError("broker down")


def test_a_job_submitted_while_the_broker_is_down_says_it_is_deferred(
    tmp_path: Path, tiny_bert: Path
) -> None:
    app, found = _platform_with(tmp_path, tiny_bert, queue=DownQueue())
    datasets.register_dataset(found.settings, "reviews", write_csv(tmp_path / "r.csv",
                              make_rows(40)), user="ops")  # fmt: skip
    found.users.create_user("alice", PASSWORD, "user")
    with TestClient(app) as client:
        alice = sign_in(client, "alice")
        answer = client.post("/train", json=JOB, headers=alice)
        assert answer.status_code == 202 and answer.json()["dispatch"] == "deferred"
        task = answer.json()["task_id"]
        assert client.get(f"/task/{task}", headers=alice).json()["dispatch"] == "deferred"


def test_a_job_sent_to_the_broker_says_so(platform: Platform) -> None:
    client, _, queue = platform
    answer = client.post("/train", json=JOB, headers=sign_in(client, "alice"))
    assert answer.json()["dispatch"] == "sent" and queue.sent


def test_default_settings_trust_no_proxy() -> None:
    assert Settings().api.trusted_proxies == []
