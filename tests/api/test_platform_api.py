"""The platform API over HTTP (TestClient): who may call what, tokens, ownership, bad bodies.

A real SQLite database with migrations and the real user, audit and job services; the queue is a
hand-written fake here (jobs are not run: the worker tests run them through Celery and Redis).
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr
from starlette.routing import Route
from tests.api.conftest import PASSWORD, SECRET, FakeQueue, settings_for, sign_in

from loralab.bootstrap import build_services
from loralab.entrypoints.api.app import create_app
from loralab.settings import (
    EXAMPLE_SECRET,
)

# Every route and who may call it. A route missing here fails test_every_route_has_a_decision.
# public: anyone; user: any signed-in user; owner: the job's owner or an admin; admin: admins;
# monitoring: the metrics token's holder or a loopback peer (tests/api/test_edge.py).
ACCESS: dict[tuple[str, str], str] = {
    ("POST", "/login"): "public",
    ("POST", "/sweeps"): "user",
    ("GET", "/sweeps"): "user",
    ("GET", "/sweeps/{sweep_id}"): "owner",
    ("POST", "/sweeps/{sweep_id}/cancel"): "owner",
    ("GET", "/health"): "public",
    ("GET", "/health/live"): "public",
    ("GET", "/health/ready"): "public",
    ("GET", "/metrics"): "monitoring",
    ("GET", "/mlflow"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/me"): "user",
    ("POST", "/me/password"): "user",
    ("POST", "/train"): "user",
    ("GET", "/tasks"): "user",
    ("GET", "/task/{task_id}"): "owner",
    ("POST", "/task/{task_id}/cancel"): "owner",
    ("GET", "/task/{task_id}/metrics"): "owner",
    ("GET", "/task/{task_id}/logs"): "owner",
    ("GET", "/task/{task_id}/report"): "owner",
    ("GET", "/experiments/mlflow/{run_id}"): "owner",
    ("POST", "/datasets"): "user",
    ("GET", "/datasets"): "user",
    ("GET", "/datasets/{ref}"): "user",
    ("GET", "/datasets/{ref}/diff"): "user",
    ("GET", "/datasets/{ref}/plots"): "user",
    ("GET", "/catalog"): "user",
    ("POST", "/train/estimate"): "user",
    ("GET", "/models/{ref}/history"): "user",
    ("GET", "/audit/verify"): "admin",
    ("GET", "/models/search"): "user",
    ("POST", "/models/recommend"): "user",
    ("POST", "/predict"): "user",
    ("POST", "/predict/batch"): "user",
    ("GET", "/experiments"): "admin",
    ("GET", "/audit/logs"): "admin",
    ("POST", "/models/transition"): "admin",
    ("GET", "/users"): "admin",
    ("POST", "/users"): "admin",
    ("PATCH", "/users/{username}"): "admin",
    ("POST", "/users/{username}/password"): "admin",
}


JOB = {"train_file": "reviews@latest", "base_model": "tiny-bert", "max_steps": 2}


def routes_of(app) -> set[tuple[str, str]]:
    """Every route: the OpenAPI paths (included routers too) and the plain top-level routes."""
    found = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in app.routes:
        if isinstance(route, Route):
            found |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    return found


def test_every_route_has_a_decision(platform) -> None:
    client, _, _ = platform
    missing = routes_of(client.app) - set(ACCESS)
    assert not missing, f"routes without an access decision: {sorted(missing)}"
    stale = set(ACCESS) - routes_of(client.app)
    assert not stale, f"decisions for routes that do not exist: {sorted(stale)}"


def _fill(path: str, task: str) -> str:
    return (
        path.replace("{task_id}", task)
        .replace("{run_id}", "0" * 32)
        .replace("{ref}", "reviews@latest")
        .replace("{username}", "bob")
        .replace("{sweep_id}", "0" * 8 + "-0000-0000-0000-" + "0" * 12)  # not bob's: 404
    )


def test_each_route_admits_exactly_who_the_table_says(platform) -> None:
    client, _, _ = platform
    alice, bob, root = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "root")
    task = client.post("/train", json=JOB, headers=alice).json()["task_id"]
    for (method, path), who in sorted(ACCESS.items()):
        url = _fill(path, task)
        anonymous = client.request(method, url)
        if who == "public":
            assert anonymous.status_code not in {401, 403}, (method, path)
            continue
        if who == "monitoring":  # not by a user token, whoever signed in
            assert client.request(method, url, headers=root).status_code == 403, (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        as_bob = client.request(method, url, headers=bob).status_code
        as_root = client.request(method, url, headers=root).status_code
        if who == "admin":
            assert as_bob == 403, (method, path)
        elif who == "owner":
            assert as_bob == 404, (method, path)  # not bob's: looks like it does not exist
        else:
            assert as_bob not in {401, 403}, (method, path, as_bob)
        assert as_root not in {401, 403}, (method, path, as_root)


def _forge(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_forged_expired_tampered_and_swapped_tokens_are_refused(platform) -> None:
    client, _, _ = platform
    good = sign_in(client, "alice")["Authorization"].split()[1]
    claims = jwt.decode(good, SECRET, algorithms=["HS256"])
    now = int(time.time())
    header, payload, signature = good.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({**claims, "role": "admin", "sub": "root"}).encode()
    ).decode()
    bad_tokens = {
        "forged": _forge(claims, key="another-secret-that-is-also-long-enough-123456"),
        "expired": _forge({**claims, "iat": now - 7200, "exp": now - 3600}),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS512": _forge(claims, algorithm="HS512"),
        "garbage": "not.a.token",
        "no exp": _forge({k: v for k, v in claims.items() if k != "exp"}),
    }
    for name, bad in bad_tokens.items():
        response = client.get("/me", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, name
        assert response.headers.get("WWW-Authenticate") == "Bearer"
    assert client.get("/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_tokens_stop_working_after_password_role_or_disable(platform) -> None:
    client, _, _ = platform
    root = sign_in(client, "root")
    alice = sign_in(client, "alice")
    change = {"old_password": PASSWORD, "new_password": "another long passphrase"}
    assert client.post("/me/password", json=change, headers=alice).status_code == 200
    assert client.get("/me", headers=alice).status_code == 401
    alice = sign_in(client, "alice", "another long passphrase")
    assert client.patch("/users/alice", json={"role": "admin"}, headers=root).status_code == 200
    assert client.get("/me", headers=alice).status_code == 401
    alice = sign_in(client, "alice", "another long passphrase")
    assert client.patch("/users/alice", json={"disabled": True}, headers=root).status_code == 200
    assert client.get("/me", headers=alice).status_code == 401
    refused = client.post(
        "/login", json={"username": "alice", "password": "another long passphrase"}
    )
    assert refused.status_code == 401


def test_sign_in_failures_look_alike_and_are_rate_limited(platform) -> None:
    client, found, _ = platform
    unknown = client.post("/login", json={"username": "nobody", "password": "whatever it is"})
    wrong = client.post("/login", json={"username": "bob", "password": "not the password"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    for _ in range(3):
        client.post("/login", json={"username": "bob", "password": "not the password"})
    limited = client.post("/login", json={"username": "bob", "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert sign_in(client, "alice")  # another user is not locked out
    records, _ = found.audit.query(action="login", limit=500)
    assert any(r.outcome == "denied" and r.username == "bob" for r in records)
    logged = str(records)
    assert "not the password" not in logged and PASSWORD not in logged  # no passwords, ever


def test_other_users_jobs_are_invisible(platform) -> None:
    client, _, _ = platform
    alice, bob, root = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "root")
    task = client.post("/train", json=JOB, headers=alice).json()["task_id"]
    missing = "00000000-0000-0000-0000-000000000000"
    for method, path in (("GET", "/task/{}"), ("POST", "/task/{}/cancel")):
        theirs = client.request(method, path.format(task), headers=bob)
        nothing = client.request(method, path.format(missing), headers=bob)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["detail"].replace(task, "ID") == nothing.json()["detail"].replace(
            missing, "ID"
        )
    assert client.get("/tasks", headers=bob).json() == []
    assert client.get("/tasks?user=alice", headers=bob).status_code == 403
    assert [t["task_id"] for t in client.get("/tasks", headers=alice).json()] == [task]
    assert [t["task_id"] for t in client.get("/tasks?user=alice", headers=root).json()] == [task]
    assert client.get(f"/task/{task}", headers=root).json()["state"] == "queued"
    cancelled = client.post(f"/task/{task}/cancel", headers=alice).json()
    assert cancelled["state"] == "cancelled"


@pytest.mark.parametrize(
    "extra",
    [
        {"owner": "root"},
        {"owner_id": 3},
        {"state": "succeeded"},
        {"user_id": 1},
        {"role": "admin"},
        {"attempts": 0},
        {"results_dir": "/etc"},
    ],
)
def test_mass_assignment_is_refused_and_nothing_queued(platform, extra: dict) -> None:
    client, _, queue = platform
    alice = sign_in(client, "alice")
    response = client.post("/train", json={**JOB, **extra}, headers=alice)
    assert response.status_code == 422
    assert next(iter(extra)) in response.text
    assert queue.sent == []
    assert client.get("/tasks", headers=alice).json() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**JOB, "train_file": "/etc/passwd"}, "train_file"),
        ({**JOB, "base_model": "../../secrets"}, "base_model"),
        ({**JOB, "train_file": "nosuch@1"}, "train_file"),
        ({**JOB, "epochs": -1}, "epochs"),
    ],
)
def test_bad_training_requests_name_the_field(platform, body: dict, words: str) -> None:
    client, _, queue = platform
    response = client.post("/train", json=body, headers=sign_in(client, "alice"))
    assert response.status_code == 422 and words in response.text
    assert queue.sent == []


def test_a_queued_job_reaches_the_queue_for_its_device(platform) -> None:
    client, _, queue = platform
    job = client.post("/train", json=JOB, headers=sign_in(client, "alice")).json()
    assert job["state"] == "queued" and queue.sent == [(job["task_id"], "cpu")]
    stepper = client.get(f"/task/{job['task_id']}", headers=sign_in(client, "alice")).json()
    assert stepper["steps"][0]["name"] == "queued"


def test_a_user_change_is_one_change_so_none_is_half_applied(platform) -> None:
    client, found, _ = platform
    root = sign_in(client, "root")
    both = client.patch("/users/root", json={"role": "user", "disabled": True}, headers=root)
    assert both.status_code == 422 and "exactly one" in both.text
    empty = client.patch("/users/bob", json={}, headers=root)
    assert empty.status_code == 422
    last_admin = client.patch("/users/root", json={"role": "user"}, headers=root)
    assert last_admin.status_code == 409
    assert found.users.get_user("root").role == "admin"


def test_admin_actions_and_denials_are_audited(platform) -> None:
    client, found, _ = platform
    root, bob = sign_in(client, "root"), sign_in(client, "bob")
    assert client.get("/audit/logs", headers=bob).status_code == 403
    created = client.post("/users", json={"username": "carol", "password": PASSWORD}, headers=root)
    assert created.status_code == 201 and "password" not in created.text
    page = client.get("/audit/logs?limit=500", headers=root).json()
    actions = {(r["action"], r["outcome"], r["username"]) for r in page["items"]}
    assert ("user.create", "allowed", "root") in actions
    assert any(a.startswith("access GET /audit/logs") and o == "denied" for a, o, _ in actions)
    only_root = client.get("/audit/logs?user=root&action=user.create", headers=root).json()
    assert only_root["total"] == 1
    assert found.audit.verify().ok


def test_dataset_upload_validates_and_is_owned(platform, tmp_path: Path) -> None:
    client, _, _ = platform
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    good = "text,label\n" + "".join(f"good movie {i},pos\nbad movie {i},neg\n" for i in range(20))
    made = client.post(
        "/datasets",
        data={"name": "mine"},
        files={"file": ("../../evil.csv", good.encode(), "text/csv")},
        headers=alice,
    )
    assert made.status_code == 201, made.text
    assert made.json()["ref"] == "mine@v1" and "source" not in made.json()
    assert client.get("/datasets/mine@v1", headers=bob).status_code == 404
    assert "mine" not in {d["name"] for d in client.get("/datasets", headers=bob).json()}
    assert "reviews" in {d["name"] for d in client.get("/datasets", headers=bob).json()}
    broken = client.post(
        "/datasets",
        data={"name": "broken"},
        files={"file": ("b.csv", b"text,label\n,pos\nfine,\n", "text/csv")},
        headers=alice,
    )
    assert broken.status_code == 422 and "line" in broken.text
    bad_type = client.post(
        "/datasets",
        data={"name": "x"},
        files={"file": ("x.exe", b"MZ", "application/octet-stream")},
        headers=alice,
    )
    assert bad_type.status_code == 422 and "file" in bad_type.text


def test_weak_or_example_secret_refuses_to_start(tmp_path: Path, tiny_bert: Path) -> None:
    for secret in ("short", EXAMPLE_SECRET):
        settings = settings_for(tmp_path, tiny_bert.parent)
        settings.auth.secret_key = SecretStr(secret)
        with pytest.raises(ValueError, match="SECRET_KEY"):
            create_app(settings, build_services(settings, queue=FakeQueue()))
    settings.auth.dev_mode = True
    create_app(settings, build_services(settings, queue=FakeQueue()))


def test_public_routes_say_no_secrets(platform) -> None:
    client, _, _ = platform
    info = client.get("/mlflow").json()
    assert set(info) == {"tracking_uri", "ui"} and SECRET not in str(info)
    health = client.get("/health").json()
    assert health == {"status": "ok", "database": "ok", "broker": "ok"}  # no versions
    assert client.get("/metrics").status_code == 403  # a TestClient peer is not loopback
    docs = client.get("/openapi.json").json()
    assert "/train" in docs["paths"] and "/login" in docs["paths"]


def test_request_ids_and_body_sizes_are_checked_before_parsing(platform) -> None:
    client, _, _ = platform
    plain = client.get("/health", headers={"X-Request-ID": "trace-42.a_b"})
    assert plain.headers["X-Request-ID"] == "trace-42.a_b"
    odd = client.get("/health", headers={"X-Request-ID": "x y<script>"})
    assert odd.headers["X-Request-ID"] != "x y<script>" and len(odd.headers["X-Request-ID"]) == 32
    bad = client.post("/login", content=b"{}", headers={"content-length": "abc"})
    assert bad.status_code == 400 and "Content-Length" in bad.json()["detail"]
    huge = client.post("/login", content=b"{}", headers={"content-length": str(10**12)})
    assert huge.status_code == 413
