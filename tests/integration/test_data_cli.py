"""`loralab data ...` end to end on small files, and training on a registered dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tests.conftest import make_rows, write_csv
from typer.testing import CliRunner

from loralab.entrypoints.cli.data import data_app
from loralab.errors import InvalidInput, NotFound
from loralab.experiments import service
from loralab.infra.tracking import tracking_uri
from loralab.settings import Settings, StorageSettings
from loralab.training import TrainConfig

pytestmark = [pytest.mark.integration]
runner = CliRunner()


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    results = tmp_path / "results"
    monkeypatch.setenv("LORALAB_STORAGE__RESULTS_DIR", str(results))
    monkeypatch.chdir(tmp_path)
    return results


def invoke(*args: str) -> object:
    return runner.invoke(data_app, list(args), catch_exceptions=False)


def test_validate_exit_codes_and_json(env: Path, tmp_path: Path) -> None:
    clean = write_csv(tmp_path / "clean.csv", make_rows(20))
    warn = write_csv(tmp_path / "warn.csv", [*make_rows(20), (" padded ", "positive")])
    bad = write_csv(tmp_path / "bad.csv", [*make_rows(20), ("", "positive")])
    assert invoke("validate", str(clean)).exit_code == 0
    result = invoke("validate", str(warn))
    assert result.exit_code == 1 and "whitespace" in result.output
    result = invoke("validate", str(bad), "--json")
    assert result.exit_code == 2
    report = json.loads(result.output)
    assert report["status"] == "errors"
    assert report["issues"][0]["row"] == 21 and report["issues"][0]["code"] == "empty_text"
    assert invoke("validate", str(tmp_path / "missing.csv")).exit_code == 2


def test_register_versions_show_diff_analyze(env: Path, tmp_path: Path) -> None:
    rows = make_rows(30)
    first = write_csv(tmp_path / "v1.csv", rows)
    result = invoke("register", "reviews", str(first))
    assert result.exit_code == 0 and "reviews@v1" in result.output
    rows[4] = (rows[4][0], "negative" if rows[4][1] == "positive" else "positive")
    second = write_csv(tmp_path / "v2.csv", rows)
    assert invoke("register", "reviews", str(second)).exit_code == 0
    again = invoke("register", "reviews", str(second), "--json")
    assert json.loads(again.output)["created"] is False

    bad = write_csv(tmp_path / "bad.csv", [*rows, ("x", "")])
    assert invoke("register", "reviews", str(bad)).exit_code == 2

    listed = json.loads(invoke("versions", "reviews", "--json").output)
    assert [v["version"] for v in listed] == ["v1", "v2"]
    datasets = json.loads(invoke("list", "--json").output)
    assert [(d["name"], d["version"]) for d in datasets] == [("reviews", "v2")]
    shown = json.loads(invoke("show", "reviews@latest", "--json").output)
    assert shown["version"] == "v2" and shown["rows"] == 30 and Path(shown["file"]).is_file()
    diff = json.loads(invoke("diff", "reviews@v1", "reviews@v2", "--json").output)
    assert diff["relabelled"] == 1 and diff["changes"][0]["row_new"] == 5
    assert "relabelled" in invoke("diff", "reviews@v1", "reviews@v2").output
    assert invoke("show", "reviews@v9").exit_code == 2
    assert invoke("show", "../etc@v1").exit_code == 2

    out = tmp_path / "analysis"
    result = invoke("analyze", "reviews@v2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and (out / "label_distribution.png").is_file()
    assert json.loads((out / "profile.json").read_text())["rows"] == 30
    assert invoke("analyze", str(tmp_path / "v1.csv"), "--out", str(tmp_path / "a2")).exit_code == 0


@pytest.mark.slow
def test_training_on_a_registered_dataset_records_the_version(
    env: Path, tmp_path: Path, tiny_bert: Path, sentiment_csv: Path
) -> None:
    assert invoke("register", "sentiment", str(sentiment_csv)).exit_code == 0
    settings = Settings(storage=StorageSettings(results_dir=env))
    config = TrainConfig(
        experiment="tiny",
        base_model=str(tiny_bert),
        train_file="sentiment@latest",
        validation_split=0.2,
        epochs=1,
        batch_size=16,
        early_stopping_patience=0,
    )
    result = service.train(settings, config)
    client = MlflowClient(tracking_uri(settings))
    run = client.get_run(result.tracker_run_id)
    version = json.loads(invoke("show", "sentiment@v1", "--json").output)
    assert run.data.tags["dataset"] == "sentiment@v1"
    assert run.data.tags["dataset_version_fingerprint"] == version["fingerprint"]
    inputs = run.inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [
        ("sentiment@v1", version["fingerprint"][:36])
    ]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"data_validation.json", "data_analysis"} <= artifacts
    analysis = {a.path for a in client.list_artifacts(run.info.run_id, "data_analysis")}
    assert "data_analysis/report.html" in analysis
    saved = (result.run.config).read_text()
    assert version["file"] in saved  # the run's config names the exact stored copy


def test_training_refuses_invalid_data_before_anything_is_written(
    env: Path, tmp_path: Path, tiny_bert: Path
) -> None:
    bad = write_csv(tmp_path / "bad.csv", [*make_rows(20), ("", "positive")])
    settings = Settings(storage=StorageSettings(results_dir=env))
    config = TrainConfig(experiment="tiny", base_model=str(tiny_bert), train_file=str(bad))
    with pytest.raises(InvalidInput, match="row 21"):
        service.train(settings, config)
    assert not (env / "tiny").exists()
    with pytest.raises(NotFound):
        service.train(settings, config.model_copy(update={"train_file": "nothing@latest"}))


LONG = "customer-reviews-of-feature-films-collected-2024-q4"  # 51 characters


def test_identifiers_are_never_cut_at_80_columns(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loralab.entrypoints.cli import common

    monkeypatch.setattr(common.console, "_width", 80)
    rows = make_rows(30)
    assert invoke("register", LONG, str(write_csv(tmp_path / "v1.csv", rows))).exit_code == 0
    rows[3] = (rows[3][0], "negative" if rows[3][1] == "positive" else "positive")
    assert invoke("register", LONG, str(write_csv(tmp_path / "v2.csv", rows))).exit_code == 0
    versions = json.loads(invoke("versions", LONG, "--json").output)
    fingerprints = [v["fingerprint"] for v in versions]

    listed = invoke("list")
    assert listed.exit_code == 0 and f"{LONG}@v2" in listed.output, listed.output
    shown = invoke("versions", LONG)
    assert f"{LONG}@v1" in shown.output and f"{LONG}@v2" in shown.output, shown.output
    assert all(fp[:12] in shown.output for fp in fingerprints), shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 80
    one = invoke("show", f"{LONG}@2")  # a plain number is a version
    assert one.exit_code == 0 and f"{LONG}@v2" in one.output
    assert fingerprints[1] in one.output  # the whole fingerprint, on one line
    changed = invoke("diff", f"{LONG}@1", f"{LONG}@v2")
    assert f"{LONG}@v1 -> {LONG}@v2" in changed.output.replace("\n", " "), changed.output


def test_list_and_show_commands_print_plain_json(env: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "v1.csv", make_rows(20))
    assert invoke("register", "reviews", str(path)).exit_code == 0
    for args in (
        ("list", "--json"),
        ("versions", "reviews", "--json"),
        ("show", "reviews@1", "--json"),
        ("diff", "reviews@v1", "reviews@latest", "--json"),
    ):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "\x1b[" not in result.output  # no colour codes
        json.loads(result.output)
