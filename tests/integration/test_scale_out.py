"""One platform on several "machines": processes with their own results homes, card folders,
caches and working directories, sharing only PostgreSQL, Redis and an MLflow server whose
artifacts live in an S3-compatible bucket (moto).

- machine C runs the platform API: a user uploads data and queues jobs, an admin promotes;
- machine A runs a worker that trains; it is killed with SIGKILL in the middle of a second job;
- machine D runs a worker that finishes that job from A's last checkpoint (attempts 2, one
  MLflow run, one registered version);
- machine B runs the prediction service: it serves ``NAME@production`` from the artifact store,
  refetches the same model after its cache is wiped, and serves a new Production within 2 s.

The dataset store is the one folder the machines still share (see docs/scale-out.md).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tests.integration.services import (
    BIN,
    RedisServer,
    free_port,
    kill_group,
    platform_env,
    private_pg_database,
    start_api,
    start_worker,
    wait_for,
    wait_for_heartbeat,
)
from tests.integration.shared_services import (
    SharedStack,
    bucket_keys,
    mlflow_pg_database,
    shared_stack,
)

from loralab.infra.tracking import RUN_ID_TAG
from loralab.training.checkpoints import MARKER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "a-scale-out-signing-secret-that-is-long-enough-01234"
PASSWORD = "correct horse battery"
TEXTS = ["the food was great great", "the phone was awful awful", "quite nice nice service"]
FAST_QUEUE = {"LORALAB_QUEUE__HEARTBEAT_SECONDS": "0.5", "LORALAB_QUEUE__STALE_AFTER_SECONDS": "3"}


@dataclass
class Platform:
    tmp: Path
    stack: SharedStack
    base: dict[str, str]  # the settings every machine shares (services, secret, datasets)
    api_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def home(self, machine: str) -> Path:
        return self.tmp / machine

    def env(self, machine: str, **extra: str) -> dict[str, str]:
        """The environment of a process on ``machine``: its own results home, card folder and
        cache, the shared services."""
        home = self.home(machine)
        return {
            **self.base,
            "LORALAB_STORAGE__RESULTS_DIR": str(home / "results"),
            "LORALAB_REGISTRY__CARD_DIR": str(home / "cards"),
            "LORALAB_STORAGE__CACHE_DIR": str(home / "cache"),
            **extra,
        }

    def start(self, key: str, process: subprocess.Popen[bytes]) -> None:
        self.processes[key] = process

    def kill(self, key: str) -> None:
        kill_group(self.processes.pop(key))

    def logs(self) -> str:
        out = []
        for log in sorted(self.tmp.glob("*/*.log")):
            out.append(f"== {log}\n{log.read_text(errors='replace')[-2500:]}")
        return "\n".join(out)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("scale-out")
    redis = RedisServer(tmp / "redis")
    redis.start()
    with (
        private_pg_database() as db_url,
        mlflow_pg_database() as mlflow_db,
        shared_stack(tmp / "shared", mlflow_db) as stack,
    ):
        base = platform_env(
            broker_url=redis.url,
            db_url=db_url,
            results=tmp / "unused",
            models=tiny_bert.parent,
            cards=tmp / "unused-cards",
            LORALAB_MLFLOW__TRACKING_URI=stack.tracking_uri,
            LORALAB_AUTH__SECRET_KEY=SECRET,
            LORALAB_DATASETS__STORE_DIR=str(tmp / "shared" / "datasets"),
            LORALAB_REGISTRY__PROMOTION_GATE="false",
            LORALAB_AUTH__BOOTSTRAP_ADMIN="root",
            LORALAB_AUTH__BOOTSTRAP_PASSWORD=PASSWORD,
        )
        for machine in "ABCD":
            tmp.joinpath(machine).mkdir()
        port = free_port()
        platform = Platform(tmp, stack, base, f"http://127.0.0.1:{port}")
        env_c = platform.env("C")
        platform.start("api", start_api(env_c, tmp / "C", tmp / "C" / "api.log", port))
        try:
            wait_for(lambda: _answers(f"{platform.api_url}/health"), 90, "the API on C", 0.2)
            yield platform
        finally:
            for key in list(platform.processes):
                platform.kill(key)
            redis.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def sign_in(client: httpx.Client, name: str) -> dict[str, str]:
    answer = client.post("/login", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def job_body(ref: str, steps: int, every: int = 10) -> dict[str, Any]:
    return {
        "train_file": ref,
        "base_model": "tiny-bert",
        "experiment": "fleet",
        "model_name": "fleet",
        "max_steps": steps,
        "eval_steps": every,
        "batch_size": 8,
        "learning_rate": 0.02,
        "validation_split": 0.2,
        "early_stopping_patience": 0,
    }


def wait_job(client: httpx.Client, who: dict[str, str], task: str, platform: Platform) -> dict:
    def ended() -> dict[str, Any] | None:
        view = client.get(f"/task/{task}", headers=who).json()
        return view if view["state"] in {"succeeded", "failed", "cancelled"} else None

    try:
        return wait_for(ended, 240, f"job {task} to end", 0.3)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{platform.logs()}") from None


def promote(client: httpx.Client, root: dict[str, str], ref: str) -> None:
    body = {"model": ref, "stage": "Production", "reason": "scale-out test"}
    answer = client.post("/models/transition", json=body, headers=root)
    assert answer.status_code == 200, answer.text


def start_serving(platform: Platform, port: int) -> str:
    env = platform.env("B", LORALAB_SERVING__DEFAULT_MODEL="fleet@production")
    args = [str(BIN / "loralab"), "serve", "--port", str(port)]
    log = platform.home("B") / "serve.log"
    process = subprocess.Popen(
        args,
        env=env,
        cwd=platform.home("B"),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    platform.start("serve", process)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{url}/health"), 120, "the prediction service on B", 0.2)
    return url


def predict(url: str, model: str | None = None) -> list[tuple[str, float, str]]:
    out = []
    for text in TEXTS:
        body = {"text": text, **({"model": model} if model else {})}
        answer = httpx.post(f"{url}/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        found = answer.json()
        out.append((found["label"], round(found["probability"], 5), found["model_version"]))
    return out


def test_a_fleet_trains_promotes_serves_and_resumes_across_machines(
    platform: Platform, tiny_bert: Path
) -> None:
    from tests.conftest import make_rows

    with httpx.Client(base_url=platform.api_url, timeout=60) as client:
        root = sign_in(client, "root")
        made = client.post(
            "/users", json={"username": "alice", "password": PASSWORD, "role": "user"}, headers=root
        )
        assert made.status_code == 201, made.text
        alice = sign_in(client, "alice")
        rows = "".join(f"{text},{label}\n" for text, label in make_rows(120))
        upload = client.post(
            "/datasets",
            data={"name": "reviews"},
            files={"file": ("reviews.csv", ("text,label\n" + rows).encode(), "text/csv")},
            headers=alice,
        )
        assert upload.status_code == 201, upload.text
        ref = upload.json()["ref"]

        # A trains; C promotes; B serves from the artifact store
        env_a = platform.env("A", **FAST_QUEUE)
        home_a = platform.home("A")
        platform.start("worker-A", start_worker(env_a, home_a, home_a / "worker.log", name="a"))
        wait_for_heartbeat(env_a)
        first = client.post("/train", json=job_body(ref, 40), headers=alice)
        assert first.status_code == 202, first.text
        done = wait_job(client, alice, first.json()["task_id"], platform)
        assert done["state"] == "succeeded" and done["model_version"] == "fleet@1", done
        promote(client, root, "fleet@1")

        serve_port = free_port()
        url = start_serving(platform, serve_port)
        answers = predict(url)
        assert {version for _, _, version in answers} == {"fleet@1"}
        assert not list(platform.home("B").rglob("run.json")), "B has no run folder of its own"
        cached = platform.home("B") / "cache"
        assert any(cached.rglob("adapter_model.safetensors")), "B fetched the adapter"

        platform.kill("serve")  # wipe B's cache: the next start fetches again, same answers
        shutil.rmtree(cached)
        url = start_serving(platform, serve_port)
        assert predict(url) == answers
        assert any(cached.rglob("adapter_model.safetensors"))

        # A dies mid-training; D finishes the run from A's checkpoint in the same MLflow run
        second = client.post("/train", json=job_body(ref, 600, every=50), headers=alice)
        assert second.status_code == 202, second.text
        task = second.json()["task_id"]

        first_run = done["mlflow_run_id"]

        def checkpoint_in_store() -> bool:
            """A complete checkpoint of the second job's MLflow run is in the bucket (the job
            names its MLflow run only when it ends: any run but the first job's)."""
            return any(
                "/checkpoints/checkpoint-" in key
                and key.endswith(f"/{MARKER}")
                and f"/{first_run}/" not in key
                for key in bucket_keys(platform.stack)
            )

        wait_for(checkpoint_in_store, 120, "a checkpoint of the second job in the bucket", 0.5)
        before = client.get(f"/task/{task}", headers=alice).json()
        assert before["state"] == "training" and before["attempts"] == 1, before
        platform.kill("worker-A")
        shutil.rmtree(home_a / "results")  # machine A is gone, disk and all

        env_d = platform.env("D", **FAST_QUEUE)
        home_d = platform.home("D")
        platform.start("worker-D", start_worker(env_d, home_d, home_d / "worker.log", name="d"))
        done = wait_job(client, alice, task, platform)
        assert done["state"] == "succeeded", (done, platform.logs())
        assert done["attempts"] == 2 and done["model_version"] == "fleet@2", done
        assert done["run_id"] == before["run_id"], (done, before)
        uri = platform.stack.tracking_uri  # both explicit: another test may set a global one
        tracking = MlflowClient(tracking_uri=uri, registry_uri=uri)
        runs = tracking.search_runs(
            [tracking.get_experiment_by_name("fleet").experiment_id],
            filter_string=f"tags.`{RUN_ID_TAG}` = '{done['run_id']}'",
        )
        assert [r.info.run_id for r in runs] == [done["mlflow_run_id"]]
        for number in ("1", "2"):  # one version per job: the resumed run registered once
            assert tracking.get_model_version("fleet", number).run_id
        with pytest.raises(MlflowException):
            tracking.get_model_version("fleet", "3")

        # promotion seen on B within 2 s (explicit alias and the default model)
        promote(client, root, "fleet@2")
        seen_after = seconds_until(url, "fleet@production", time.monotonic())
        default_after = seconds_until(url, None, time.monotonic() - seen_after)
        print(f"promotion seen on B after {seen_after:.2f} s (default: {default_after:.2f} s)")
        assert seen_after <= 2.0, f"B served fleet@2 as fleet@production {seen_after:.2f} s late"
        assert default_after <= 3.0, f"B's default followed {default_after:.2f} s late"


def seconds_until(url: str, model: str | None, since: float) -> float:
    """Seconds from ``since`` until B answers with fleet@2 for ``model`` (None: its default),
    asking one text at a time (at most 30 s)."""
    body = {"text": TEXTS[0], **({"model": model} if model else {})}
    while time.monotonic() - since < 30:
        answer = httpx.post(f"{url}/predict", json=body, timeout=30)
        if answer.status_code == 200 and answer.json()["model_version"] == "fleet@2":
            return time.monotonic() - since
        time.sleep(0.05)
    raise AssertionError(f"B did not serve fleet@2 for {model or 'its default'} within 30 s")
