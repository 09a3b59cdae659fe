"""One owner per dataset name and one visibility rule on every path that takes a dataset:
upload to an existing name, show, train, recommend by dataset, and the model cards that name
the data a model was trained on (issue 11, classes 3 and 4)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.api.conftest import Platform, sign_in
from tests.api.test_api_datasets_jobs import _rows_csv, train, upload
from tests.helpers.registry_fakes import WordEmbedder, card_dict

from loralab.datasets import service as datasets


def post_file(client: TestClient, who: dict[str, str], name: str, seed: int) -> tuple[int, str]:
    answer = client.post(
        "/datasets",
        data={"name": name},
        files={"file": (f"{name}.csv", _rows_csv(seed), "text/csv")},
        headers=who,
    )
    return answer.status_code, answer.text


def test_nobody_adds_a_version_under_a_name_they_do_not_own(platform: Platform) -> None:
    client, found, _ = platform
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    upload(client, alice, "private", seed=1)
    for name in ("private", "reviews"):  # another user's, and a shared (CLI) name
        status, text = post_file(client, bob, name, seed=5)
        assert status == 409 and "taken" in text, text
    # nothing was stored: @latest still means the owner's (and the operator's) file for everyone
    assert [v.ref for v in datasets.list_versions(found.settings, "private")] == ["private@v1"]
    assert [v.ref for v in datasets.list_versions(found.settings, "reviews")] == ["reviews@v1"]
    assert client.get("/datasets/reviews@latest", headers=alice).json()["version"] == "v1"
    taken = [e for e in found.audit.query(action="dataset.upload")[0] if e.outcome == "denied"]
    assert len(taken) == 2


def test_the_owner_and_an_admin_add_versions_that_keep_the_names_owner(
    platform: Platform,
) -> None:
    client, _, _ = platform
    alice, bob, root = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "root")
    upload(client, alice, "mine", seed=1)
    assert upload(client, alice, "mine", seed=2) == "mine@v2"
    assert upload(client, root, "mine", seed=3) == "mine@v3"
    assert client.get("/datasets/mine@latest", headers=alice).json()["version"] == "v3"
    assert client.get("/datasets/mine@v3", headers=bob).status_code == 404
    assert upload(client, root, "reviews", seed=4) == "reviews@v2"  # a shared name stays shared
    assert client.get("/datasets/reviews@latest", headers=bob).json()["version"] == "v2"
    assert train(client, bob, "mine@v3").status_code == 422


def test_recommend_by_dataset_answers_like_a_missing_one(platform: Platform) -> None:
    client, found, _ = platform
    found.registry._embedder = WordEmbedder()
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    ref = upload(client, alice, "private", seed=1)
    asked = {}
    for dataset in (ref, "private@latest", "nothere@v1"):
        answer = client.post("/models/recommend", json={"dataset": dataset}, headers=bob)
        asked[dataset] = (answer.status_code, answer.json()["detail"].replace(dataset, "REF"))
    assert len(set(asked.values())) == 1 and asked[ref][0] == 404
    answer = client.post("/models/recommend", json={"dataset": ref}, headers=alice)
    assert answer.status_code == 200, answer.text


def test_cards_hide_data_the_viewer_may_not_see(platform: Platform) -> None:
    client, found, _ = platform
    found.registry._embedder = WordEmbedder()
    alice, bob, root = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "root")
    ref = upload(client, alice, "private", seed=1)
    fingerprint = client.get(f"/datasets/{ref}", headers=alice).json()["fingerprint"]
    secret = {"name": "private", "version": "v1", "fingerprint": fingerprint}
    found.registry.add_card(
        card_dict(
            dataset=secret,
            training={"learning_rate": 0.01},
            tags={"dataset": ref, "experiment": "e"},
        )
    )
    found.registry.add_card(card_dict(name="shared", dataset={"name": "reviews", "version": "v1"}))

    def seen(who: dict[str, str]) -> dict[str, dict[str, object]]:
        items = client.get("/models/search", headers=who).json()["items"]
        return {card["name"]: card for card in items}

    hidden = seen(bob)["m"]
    assert hidden["dataset"]["name"] != "private" and hidden["dataset"]["fingerprint"] is None
    assert hidden["training"] == {} and hidden["tags"] == {"experiment": "e"}
    assert fingerprint not in client.get("/models/search", headers=bob).text
    assert seen(bob)["shared"]["dataset"]["name"] == "reviews"
    for who in (alice, root):
        assert seen(who)["m"]["dataset"] == secret
    text = client.post("/models/recommend", json={"text": "sentiment"}, headers=bob).text
    liked = client.post("/models/recommend", json={"model": "shared@1"}, headers=bob).text
    for answer in (text, liked):
        assert fingerprint not in answer and '"private"' not in answer
        assert "learning_rate" not in answer
