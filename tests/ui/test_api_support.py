"""The API routes the web UI needs (routes/ui_support.py), under TestClient: catalog, step
estimate, dataset diff and plots, stage history and the audit chain's status."""

from __future__ import annotations

import base64

from loralab.datasets import service as datasets
from tests.api.conftest import platform, sign_in  # noqa: F401 - the fixture


def test_the_catalog_names_catalog_models_and_local_folders_never_paths(platform) -> None:  # noqa: F811
    client, found, _ = platform
    answer = client.get("/catalog", headers=sign_in(client, "alice"))
    assert answer.status_code == 200, answer.text
    names = [m["name"] for m in answer.json()["items"]]
    assert "minilm-l6" in names and "tiny-bert" in names
    assert answer.json()["default"] == "minilm-l6"
    assert str(found.settings.storage.models_dir) not in answer.text


def test_the_step_estimate_counts_like_the_trainer(platform) -> None:  # noqa: F811
    client, _, _ = platform
    alice = sign_in(client, "alice")
    body = {"train_file": "reviews@latest", "validation_split": 0.25, "batch_size": 8, "epochs": 2}
    answer = client.post("/train/estimate", json=body, headers=alice)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {} == {"rows": 40, "train_rows": 30, "batch_size": 8, "epochs": 2.0,
                                  "steps_per_epoch": 4, "steps": 8}  # fmt: skip
    capped = client.post("/train/estimate", json={**body, "max_steps": 5}, headers=alice)
    assert capped.json()["steps"] == 5
    missing = client.post("/train/estimate", json={"train_file": "nope@1"}, headers=alice)
    assert missing.status_code == 404


def test_dataset_diff_between_visible_versions(platform, tmp_path) -> None:  # noqa: F811
    from tests.conftest import make_rows, write_csv

    client, found, _ = platform
    rows = make_rows(40)
    changed = rows[:30] + [(text, "negative") for text, _ in rows[30:32]] + make_rows(5, seed=9)
    datasets.register_dataset(
        found.settings, "reviews", write_csv(tmp_path / "v2.csv", changed), user="ops"
    )
    versions = [v.ref for v in datasets.list_versions(found.settings, "reviews")]
    alice = sign_in(client, "alice")
    answer = client.get(
        f"/datasets/{versions[1]}/diff", params={"base": versions[0]}, headers=alice
    )
    assert answer.status_code == 200, answer.text
    diff = answer.json()
    assert (diff["old"], diff["new"]) == (versions[0], versions[1])
    assert diff["added"] >= 1 and diff["removed"] >= 1
    assert {c["kind"] for c in diff["changes"]} <= {"added", "removed", "relabelled"}
    unknown = client.get(f"/datasets/{versions[1]}/diff", params={"base": "x@1"}, headers=alice)
    assert unknown.status_code == 404


def test_dataset_plots_are_pngs(platform) -> None:  # noqa: F811
    client, _, _ = platform
    answer = client.get("/datasets/reviews@latest/plots", headers=sign_in(client, "alice"))
    assert answer.status_code == 200, answer.text
    plots = answer.json()["plots"]
    assert "label_distribution" in plots
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in plots.values())


def test_stage_history_of_an_unknown_model_is_not_found(platform) -> None:  # noqa: F811
    client, _, _ = platform
    answer = client.get("/models/nope@1/history", headers=sign_in(client, "alice"))
    assert answer.status_code == 404


def test_the_audit_chain_status_is_for_admins(platform) -> None:  # noqa: F811
    client, _, _ = platform
    assert client.get("/audit/verify", headers=sign_in(client, "bob")).status_code == 403
    answer = client.get("/audit/verify", headers=sign_in(client, "root"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True and answer.json()["checked"] >= 1
