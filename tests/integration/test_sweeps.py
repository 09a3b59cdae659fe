"""Sweeps end to end: the CLI on a tiny BERT with its study in a real PostgreSQL (resumed,
pruned, recipe written, MLflow parent and children), and the API queueing trials as jobs that
report back once a worker has run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.api.conftest import Platform, platform, sign_in  # noqa: F401 - the fixture
from typer.testing import CliRunner

from loralab.entrypoints.cli.sweep import sweep_app

TINY = Path(__file__).resolve().parents[1] / "unit" / "sweeps" / "sweep-tiny.yaml"

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 5e-2, "log": True},
    "lora_target_modules": {"type": "categorical", "choices": [["query", "value"], ["query"]]},
}
SWEEP = {
    "train": {"train_file": "reviews@latest", "base_model": "tiny-bert", "max_steps": 2},
    "space": SPACE,
    "trials": 2,
}


def _env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {
        "LORALAB_DB__URL": db_url,
        "LORALAB_STORAGE__RESULTS_DIR": str(tmp_path / "results"),
        "LORALAB_REGISTRY__CARD_DIR": str(tmp_path / "cards"),
        "LORALAB_MLFLOW__TRACKING_URI": "",
        "HF_HUB_OFFLINE": "1",
    }


def _sweep_file(tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / f"sweep-{len(list(tmp_path.glob('sweep-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.integration
def test_cli_sweep_on_postgres_resumes_and_writes_a_recipe(
    tmp_path: Path, tiny_bert: Path, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    import psycopg
    from mlflow.tracking import MlflowClient

    from loralab.training.config import load_config

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the sample data's paths
    env = _env(tmp_path, pg_db_url)
    name = f"tiny-{tmp_path.name[-12:]}".replace("_", "-")
    runner = CliRunner()
    first = _sweep_file(tmp_path, budget={"trials": 1})
    args = [str(first), f"base_model={tiny_bert}", "--name", name]
    done = runner.invoke(sweep_app, args, env=env)
    assert done.exit_code == 0, done.output

    # resumed with a larger budget: one more trial, in the same study
    more = _sweep_file(tmp_path, budget={"trials": 2})
    again = runner.invoke(
        sweep_app, [str(more), f"base_model={tiny_bert}", "--resume", name], env=env
    )
    assert again.exit_code == 0, again.output
    # a resumed sweep must search the same space
    other = _sweep_file(tmp_path, space={"lora_r": {"type": "int", "low": 2, "high": 4}})
    refused = runner.invoke(
        sweep_app, [str(other), f"base_model={tiny_bert}", "--resume", name], env=env
    )
    assert refused.exit_code == 2 and "differs" in refused.output
    taken = runner.invoke(sweep_app, args, env=env)
    assert taken.exit_code == 2 and "exists: resume it with --resume" in taken.output

    folder = tmp_path / "results" / "_sweeps" / name
    trials = json.loads((folder / "trials.json").read_text(encoding="utf-8"))
    assert [t["number"] for t in trials] == [0, 1]
    assert trials[0]["params"] != trials[1]["params"]  # the resumed worker did not redraw trial 0
    assert all(t["state"] in {"COMPLETE", "PRUNED"} for t in trials)
    assert (folder / "metric_by_trial.png").read_bytes()[:4] == b"\x89PNG"
    recipe = load_config(folder / "best.yaml")  # what loralab train reads
    best = max(
        (t for t in trials if t["state"] == "COMPLETE"), key=lambda t: (t["value"], -t["number"])
    )
    assert recipe.learning_rate == best["params"]["learning_rate"]
    assert list(recipe.lora_target_modules or ()) == best["params"]["lora_target_modules"]
    assert recipe.base_model == str(tiny_bert) and recipe.max_steps == 4

    # the study lives in PostgreSQL, in its own schema; the project's migrations are untouched
    storage_url = pg_db_url
    study = optuna.load_study(
        study_name=name,
        storage=optuna.storages.RDBStorage(
            storage_url.replace("postgresql://", "postgresql+psycopg://"),
            engine_kwargs={"connect_args": {"options": "-csearch_path=optuna"}},
        ),
    )
    assert len(study.trials) == 2
    with psycopg.connect(pg_db_url) as conn:
        schemas = {
            row[0]
            for row in conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'trials'"
            )
        }
        assert schemas == {"optuna"}
        project = conn.execute("SELECT version_num FROM public.alembic_version").fetchall()
    from loralab.infra.migrate import head_revision

    assert project == [(head_revision(),)]

    # MLflow: one parent run, each trial a child of it
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("loralab.sweep.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["loralab.sweep.trial"] for r in children) == ["0", "1"]
    by_trial = {int(r.data.tags["loralab.sweep.trial"]): r.data.tags for r in children}
    for trial in trials:
        assert by_trial[trial["number"]]["loralab.sweep.trial_state"] == trial["state"]
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"metric_by_trial.png", "best.yaml", "trials.json"} <= artifacts


def test_a_bad_sweep_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = _sweep_file(tmp_path, space={"lora_rank": {"type": "int", "low": 1, "high": 4}})
    result = CliRunner().invoke(sweep_app, [str(bad)], env=_env(tmp_path, "sqlite://"))
    assert result.exit_code == 2
    assert "space.lora_rank: not a setting" in result.output


# --- the API: trials as jobs ---------------------------------------------------------------------


def _audit_actions(found: Any) -> list[str]:
    return [e.action for e in found.audit.query(limit=100)[0]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"space": {"lora_rank": {"type": "int", "low": 1, "high": 4}}}, "space.lora_rank"),
        (
            {"space": {"train_file": {"type": "categorical", "choices": ["x@1"]}}},
            "space.train_file",
        ),
        ({"space": {"lora_r": {"type": "int", "low": 9, "high": 2}}}, "low (9) must be below"),
        ({"space": {"lora_r": {"type": "int", "low": 1, "high": 5000}}}, "space.lora_r: 5000"),
        ({"space": {"lora_alpha": {"type": "categorical", "choices": []}}}, "choices"),
        ({"space": {}}, "space"),
        ({"trials": 0}, "trials"),
        ({"train": {"train_file": "../etc/passwd"}}, "train"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(
    platform: Platform,  # noqa: F811
    change: dict,
    field: str,
) -> None:
    client, found, queue = platform
    alice = sign_in(client, "alice")
    answer = client.post("/sweeps", json={**SWEEP, **change}, headers=alice)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert queue.sent == [] and client.get("/sweeps", headers=alice).json() == []


def test_a_sweep_larger_than_the_free_quota_queues_nothing(platform: Platform) -> None:  # noqa: F811
    client, found, queue = platform
    alice = sign_in(client, "alice")
    client.post("/train", json=SWEEP["train"], headers=alice)
    answer = client.post("/sweeps", json={**SWEEP, "trials": 3}, headers=alice)  # 1 + 3 > 3
    assert answer.status_code == 429 and "free job slots" in answer.text
    assert len(queue.sent) == 1 and client.get("/sweeps", headers=alice).json() == []
    # a dataset alice may not see: refused before any trial is queued
    hidden = {**SWEEP, "train": {**SWEEP["train"], "train_file": "nobody@latest"}}
    as_job = client.post("/train", json=hidden["train"], headers=alice)
    assert as_job.status_code in {404, 422}
    as_sweep = client.post("/sweeps", json=hidden, headers=alice)
    assert (as_sweep.status_code, as_sweep.json()["detail"]) == (
        as_job.status_code,
        as_job.json()["detail"],
    )
    assert len(queue.sent) == 1 and client.get("/sweeps", headers=alice).json() == []


@pytest.mark.slow
def test_api_sweep_queues_jobs_that_report_back(platform: Platform) -> None:  # noqa: F811
    client, found, queue = platform
    alice, bob, root = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "root")
    answer = client.post("/sweeps", json={**SWEEP, "name": "first"}, headers=alice)
    assert answer.status_code == 202, answer.text
    sweep = answer.json()
    jobs = [t["job_id"] for t in sweep["trials"]]
    assert len(jobs) == 2 and [job for job, _ in queue.sent] == jobs
    assert sweep["state"] == "running" and sweep["best"] is None
    tasks = client.get("/tasks", headers=alice).json()
    assert {t["task_id"] for t in tasks} == set(jobs) and {t["owner"] for t in tasks} == {"alice"}
    for trial, task in zip(sweep["trials"], reversed(tasks), strict=True):
        assert task["task_id"] == trial["job_id"]
    actions = _audit_actions(found)
    assert actions.count("job.submit") == 2 and actions.count("sweep.submit") == 1

    url = f"/sweeps/{sweep['sweep_id']}"
    assert client.get(url, headers=bob).status_code == 404  # like someone else's job
    assert client.get("/sweeps", headers=bob).json() == []
    assert client.get(url, headers=root).status_code == 200
    assert client.get("/sweeps/not-a-sweep", headers=alice).status_code == 404

    found.jobs.execute(jobs[0], "test-worker")  # what a worker does with a delivered id
    assert client.post(f"/task/{jobs[1]}/cancel", headers=alice).status_code == 200
    done = client.get(url, headers=alice).json()
    assert done["state"] == "finished"
    assert [t["state"] for t in done["trials"]] == ["COMPLETE", "FAIL"]
    first, second = done["trials"]
    assert 0.0 <= first["value"] <= 1.0 and first["job_state"] == "succeeded"
    assert second["value"] is None and second["job_state"] == "cancelled" and second["error"]
    assert done["best"] == first
    params = first["params"]
    assert set(params) == {"learning_rate", "lora_target_modules"}
    assert client.get(url, headers=alice).json() == done  # telling twice changes nothing


def _study(found: Any, sweep_id: str) -> Any:
    import optuna

    from loralab.sweeps.storage import study_storage

    return optuna.load_study(study_name=sweep_id, storage=study_storage(found.settings.db_url))


@pytest.mark.slow
def test_an_api_sweep_queues_its_next_trial_when_one_ends_and_prunes_a_trial_behind(
    platform: Platform,  # noqa: F811
) -> None:
    """parallel 1: one trial at a time, each next one queued by the worker when a trial ends
    (drawn after the results so far); the pruner stops a trial behind the others at an
    evaluation: its job ends cancelled, saying so, and the trial is PRUNED."""
    import optuna
    from sqlalchemy import select
    from tests.conftest import make_rows, write_csv

    from loralab.datasets import service as datasets
    from loralab.entrypoints.worker.app import deliver
    from loralab.infra.db import Job

    client, found, queue = platform
    alice = sign_in(client, "alice")
    body = {
        **SWEEP,
        "train": {**SWEEP["train"], "max_steps": 4, "eval_steps": 2},
        "trials": 4,  # 3 run here, and one finished trial the test adds
        "parallel": 1,
        "pruner": {"kind": "median", "startup_trials": 1},
    }
    answer = client.post("/sweeps", json=body, headers=alice)
    assert answer.status_code == 202, answer.text
    sweep = answer.json()
    assert (sweep["planned"], sweep["parallel"], len(sweep["trials"])) == (4, 1, 1)
    url = f"/sweeps/{sweep['sweep_id']}"
    first = sweep["trials"][0]["job_id"]
    with found.db.session() as session:
        row = session.get(Job, first)
        assert row is not None and (row.sweep_id, row.sweep_trial) == (sweep["sweep_id"], 0)
        assert row.config["train_file"] == "reviews@v1"
    # a new version of the data meanwhile: every trial trains on the version checked at submit
    newer = write_csv(found.settings.storage.results_dir.parent / "more.csv", make_rows(48))
    datasets.register_dataset(found.settings, "reviews", newer, user="ops")

    deliver(found, first, "test-worker")  # trains, tells, queues trial 1
    after_first = client.get(url, headers=alice).json()
    assert [t["state"] for t in after_first["trials"]] == ["COMPLETE", "RUNNING"]
    second = after_first["trials"][1]["job_id"]
    assert [job for job, _ in queue.sent] == [first, second]
    study = _study(found, sweep["sweep_id"])
    assert sorted(study.trials[0].intermediate_values) == [2, 4]  # each evaluation reported

    # a finished trial far ahead at every step: the next one is behind the median at step 2
    study.add_trial(
        optuna.trial.create_trial(value=2.0, intermediate_values={2: 2.0, 4: 2.0})
    )  # no accuracy reaches 2.0
    deliver(found, second, "test-worker")
    job = client.get(f"/task/{second}", headers=alice).json()
    assert job["state"] == "cancelled" and "pruned by sweep" in job["error"]
    assert "at step 2" in job["error"]
    pruned = client.get(url, headers=alice).json()
    assert [t["state"] for t in pruned["trials"]] == ["COMPLETE", "PRUNED", "COMPLETE", "RUNNING"]
    assert pruned["state"] == "running" and pruned["best"]["number"] == 2  # the one added

    third = pruned["trials"][3]["job_id"]
    with found.db.session() as session:
        link = session.execute(select(Job.sweep_trial, Job.config).where(Job.id == third)).one()
    assert link.sweep_trial == 3 and link.config["train_file"] == "reviews@v1"
    deliver(found, third, "test-worker")
    done = client.get(url, headers=alice).json()
    assert done["state"] == "finished" and len(done["trials"]) == 4
    assert len(queue.sent) == 3
    submits = [e for e in found.audit.query(limit=100)[0] if e.action == "job.submit"]
    assert [e.username for e in submits] == ["alice"] * 3
    assert [e.client for e in submits].count(f"sweep:{sweep['sweep_id']}") == 2  # the worker's


def test_cancelling_an_api_sweep_cancels_its_running_trials_and_queues_no_more(
    platform: Platform,  # noqa: F811
) -> None:
    from loralab.entrypoints.worker.app import deliver

    client, found, queue = platform
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    body = {**SWEEP, "trials": 5, "parallel": 2}
    sweep = client.post("/sweeps", json=body, headers=alice).json()
    url = f"/sweeps/{sweep['sweep_id']}"
    assert client.post(f"{url}/cancel", headers=bob).status_code == 404  # not bob's
    answer = client.post(f"{url}/cancel", headers=alice)
    assert answer.status_code == 200, answer.text
    cancelled = answer.json()
    assert cancelled["state"] == "cancelled"
    assert [t["job_state"] for t in cancelled["trials"]] == ["cancelled", "cancelled"]
    assert [t["state"] for t in cancelled["trials"]] == ["FAIL", "FAIL"]
    for job_id, _ in queue.sent:  # the messages still reach a worker: nothing more is queued
        deliver(found, job_id, "test-worker")
    assert len(client.get(url, headers=alice).json()["trials"]) == 2 and len(queue.sent) == 2
    assert client.post(f"{url}/cancel", headers=alice).status_code == 409
    assert "sweep.cancel" in _audit_actions(found)


def test_a_sweep_asks_only_for_the_slots_it_runs_at_once(platform: Platform) -> None:  # noqa: F811
    client, found, queue = platform
    alice = sign_in(client, "alice")
    client.post("/train", json=SWEEP["train"], headers=alice)  # 1 of alice's 3 slots
    answer = client.post("/sweeps", json={**SWEEP, "trials": 20, "parallel": 2}, headers=alice)
    assert answer.status_code == 202, answer.text
    assert len(answer.json()["trials"]) == 2 and len(queue.sent) == 3
    too_many = client.post("/sweeps", json={**SWEEP, "trials": 20, "parallel": 1}, headers=alice)
    assert too_many.status_code == 429 and "lower parallel" in too_many.text


@pytest.mark.integration
def test_workers_ending_trials_at_once_on_postgres_queue_each_next_trial_once(
    pg_private_db_url: str, tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four workers tell the same two ended trials at once: the sweep's advisory lock on
    PostgreSQL lets one queue the next two trials and the others find nothing to do (the
    in-process lock is taken out here, so only the database's lock stands between them)."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import update
    from tests.api.conftest import PASSWORD, FakeQueue, settings_for
    from tests.conftest import make_rows, write_csv

    from loralab.bootstrap import build_services
    from loralab.datasets import service as datasets
    from loralab.identity import Actor, RequestContext
    from loralab.infra.db import Job, utcnow
    from loralab.settings import DbSettings
    from loralab.sweeps import service as sweeps

    monkeypatch.setattr(sweeps, "_advancing", contextlib.nullcontext())
    settings = settings_for(tmp_path, tiny_bert.parent).model_copy(
        update={"db": DbSettings(url=pg_private_db_url)}
    )
    datasets.register_dataset(
        settings, "reviews", write_csv(tmp_path / "r.csv", make_rows(40)), user="ops"
    )
    queue = FakeQueue()
    found = build_services(settings, queue=queue)
    user = found.users.create_user("alice", PASSWORD)
    alice = Actor(id=user.id, username="alice", role="user")
    request = sweeps.SweepRequest.model_validate({**SWEEP, "trials": 4, "parallel": 2})
    view = found.sweeps.submit(alice, request, RequestContext())
    jobs = [t.job_id for t in view.trials]
    with found.db.session() as session:  # both jobs end failed, as a dead worker's would
        session.execute(update(Job).where(Job.id.in_(jobs)).values(state="failed"))
        session.execute(update(Job).where(Job.id.in_(jobs)).values(finished_at=utcnow()))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(found.sweeps.job_ended, [*jobs, *jobs]))
    after = found.sweeps.get(alice, view.sweep_id)
    assert [t.state for t in after.trials] == ["FAIL", "FAIL", "RUNNING", "RUNNING"]
    assert len(queue.sent) == 4 and after.state == "running"


_OPEN_STORAGE = (
    "import sys; from loralab.sweeps.storage import study_storage; "
    "study_storage(sys.argv[1]); print('ok')"
)


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_processes_opening_a_fresh_study_database_at_once_all_succeed(
    backend: str, pg_empty_db_url: str, tmp_path: Path
) -> None:
    """Optuna's create_all races across processes (a pg_type unique violation, 'table already
    exists' on SQLite): the first open takes a lock, so API and workers may start together."""
    import subprocess
    import sys

    url = pg_empty_db_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'loralab.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_STORAGE, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()[-500:]) for p in procs]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
