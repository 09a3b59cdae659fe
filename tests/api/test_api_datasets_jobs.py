"""POST /train on datasets over HTTP: a user trains only on dataset versions they may see (their
uploads, CLI-registered ones, any for an admin); anything else answers exactly like a missing
dataset. A real migrated SQLite database and real services; the queue is a hand-written fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.api.conftest import Platform, sign_in

from loralab.infra.db import Job

MISSING = "nothere@v1"


def _rows_csv(seed: int) -> bytes:
    from tests.conftest import make_rows

    rows = "".join(f"{text},{label}\n" for text, label in make_rows(40, seed=seed))
    return ("text,label\n" + rows).encode()


def upload(client: TestClient, who: dict[str, str], name: str, seed: int) -> str:
    made = client.post(
        "/datasets",
        data={"name": name},
        files={"file": (f"{name}.csv", _rows_csv(seed), "text/csv")},
        headers=who,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["ref"])


def train(client: TestClient, who: dict[str, str], train_file: str, **more: Any) -> Any:
    body = {"train_file": train_file, "base_model": "tiny-bert", "max_steps": 2, **more}
    return client.post("/train", json=body, headers=who)


def refused(client: TestClient, who: dict[str, str], ref: str, field: str) -> str:
    """The 422 detail of a job naming ``ref`` in ``field``, with the ref itself blanked."""
    body = {"train_file": ref} if field == "train_file" else {"train_file": "reviews@v1"}
    if field == "validation_file":
        body["validation_file"] = ref
    response = train(client, who, **body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
    detail = str(response.json()["detail"])
    assert detail.startswith(f"{field}: ")
    return detail.replace(ref, "REF")


def test_another_users_dataset_answers_exactly_like_a_missing_one(platform: Platform) -> None:
    client, found, queue = platform
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    mine = upload(client, alice, "mine", seed=1)
    for field in ("train_file", "validation_file"):
        for theirs in (mine, "mine@latest"):
            missing = theirs.replace("mine", "nothere")
            assert refused(client, bob, theirs, field) == refused(client, bob, missing, field)
    assert queue.sent == []
    with found.db.session() as session:
        assert session.query(Job).count() == 0


def test_owner_admin_and_cli_registered_datasets_are_accepted(platform: Platform) -> None:
    client, _, queue = platform
    alice, bob, root = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "root")
    mine = upload(client, alice, "mine", seed=1)
    assert train(client, alice, mine).status_code == 202
    assert train(client, alice, "reviews@latest", validation_file=mine).status_code == 202
    assert train(client, root, mine).status_code == 202
    assert train(client, bob, "reviews@latest").status_code == 202
    assert len(queue.sent) == 4


def test_latest_means_the_newest_version_you_may_use_and_the_job_keeps_it(
    platform: Platform,
) -> None:
    client, found, _ = platform
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    assert upload(client, bob, "mine", seed=9) == "mine@v1"  # bob's own name
    assert {d["ref"] for d in client.get("/datasets", headers=alice).json()} == {"reviews@v1"}
    assert {d["ref"] for d in client.get("/datasets", headers=bob).json()} == {
        "reviews@v1",
        "mine@v1",
    }
    assert upload(client, bob, "mine", seed=8) == "mine@v2"
    jobs = {who: train(client, token, ref).json()["task_id"] for who, token, ref in
            (("alice", alice, "reviews@latest"), ("bob", bob, "mine@latest"))}  # fmt: skip
    with found.db.session() as session:
        files = {who: session.get(Job, job).config["train_file"] for who, job in jobs.items()}
    assert files == {"alice": "reviews@v1", "bob": "mine@v2"}


def test_uploading_existing_content_never_changes_who_owns_it(
    platform: Platform, tmp_path: Path
) -> None:
    client, _, _ = platform
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    shared = (tmp_path / "reviews.csv").read_bytes()  # the CLI-registered, shared dataset
    again = client.post(
        "/datasets",
        data={"name": "reviews"},
        files={"file": ("r.csv", shared, "text/csv")},
        headers=bob,
    )
    assert again.status_code == 409  # a shared name takes versions from admins only
    assert "reviews" in {d["name"] for d in client.get("/datasets", headers=alice).json()}
    ref = upload(client, alice, "private", 7)
    taken = client.post(
        "/datasets",
        data={"name": "private"},
        files={"file": ("p.csv", _rows_csv(7), "text/csv")},
        headers=bob,
    )
    assert taken.status_code == 409 and "another name" in taken.json()["detail"]
    assert client.get(f"/datasets/{ref}", headers=bob).status_code == 404
    assert client.get(f"/datasets/{ref}", headers=alice).status_code == 200
