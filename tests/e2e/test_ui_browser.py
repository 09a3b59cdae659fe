"""The web UI in a real browser: Debian's ``chromium`` driven by playwright (headless, never
``playwright install``) against a real API (uvicorn), a real Celery worker and a private
redis-server, with ``streamlit run`` of the UI on a free port.

alice signs in, uploads a dataset, submits a tiny job and watches the stepper reach
succeeded with a curve drawn; a second run lets her compare two; root promotes the model;
alice classifies texts in the playground and signs out. bob cannot open alice's job by its
id, and once his token is revoked the UI returns him to sign-in, keeping what he had typed.

Screenshots go under the test's tmp dir, and to ``$LORALAB_UI_SCREENSHOTS`` when it is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.integration.services import (
    BIN,
    RedisServer,
    free_port,
    kill_group,
    platform_settings,
    serve_in_process,
    settings_env,
    start_worker,
    wait_for,
    wait_for_heartbeat,
)

from loralab.entrypoints.api.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECRET = "a-browser-end-to-end-signing-secret-long-enough-0123"
PASSWORD = "correct horse battery"
APP = Path(__file__).resolve().parents[2] / "src/loralab/entrypoints/ui/app.py"
JOB_SECONDS = 120_000  # ms: a tiny job, queued behind at most one other
STEP = 30_000  # ms: any one page reaction


@dataclass
class Live:
    api: str
    ui: str
    tmp: Path
    shots: Path

    def logs(self) -> str:
        parts = [
            (self.tmp / n).read_text(errors="replace")[-3000:] for n in ("worker.log", "ui.log")
        ]
        return "\n----\n".join(parts)


def start_ui(api_url: str, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    args = [str(BIN / "streamlit"), "run", str(APP), "--server.address", "127.0.0.1"]
    args += ["--server.port", str(port), "--server.headless", "true"]
    args += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    args += ["--client.toolbarMode", "viewer", "--", "--api-url", api_url]
    return subprocess.Popen(
        args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def ui_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Live]:
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("ui-browser")
    redis = RedisServer(tmp / "redis")
    redis.start()
    settings = platform_settings(tmp, broker_url=redis.url, models=tiny_bert.parent, secret=SECRET)
    app = create_app(settings)
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        app.state.services.users.create_user(name, PASSWORD, role)
    env = settings_env(settings)
    worker = start_worker(env, tmp, tmp / "worker.log")
    shots = tmp / "screenshots"
    shots.mkdir()
    try:
        wait_for_heartbeat(env)
        with serve_in_process(app) as api:
            ui_port = free_port()
            ui = start_ui(api, ui_port, tmp / "ui.log", env)
            try:
                ui_url = f"http://127.0.0.1:{ui_port}"
                wait_for(lambda: ui_answers(ui_url), 60, "the UI to start", 0.5)
                yield Live(api, ui_url, tmp, shots)
            finally:
                kill_group(ui)
    finally:
        kill_group(worker)
        redis.kill()
        if target := os.environ.get("LORALAB_UI_SCREENSHOTS"):
            Path(target).mkdir(parents=True, exist_ok=True)
            for shot in shots.glob("*.png"):
                if not shot.name.startswith("failed_"):  # those stay test artifacts
                    shutil.copy2(shot, Path(target) / shot.name)


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


class Ui:
    """One browser tab on the UI, with the few gestures Streamlit's widgets need."""

    def __init__(self, browser: object, live: Live) -> None:
        self.live = live
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        self.page.set_default_timeout(STEP)
        self.page.goto(live.ui)
        self.see("Sign in to loralab")

    def see(self, text: str, timeout: int = STEP) -> None:
        try:
            self.page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)
        except Exception:
            self.shot("failed_" + "".join(c if c.isalnum() else "_" for c in text)[:40])
            raise AssertionError(f"never saw {text!r}\n{self.live.logs()}") from None

    def idle(self) -> None:
        """Wait until Streamlit has finished the rerun the last gesture started."""
        self.page.wait_for_timeout(300)
        self.page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")

    def type(self, label: str, value: str) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
        self.idle()

    def press(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()
        self.idle()

    def go(self, page_title: str) -> None:
        self.page.get_by_role("link", name=page_title, exact=True).click()
        self.see(page_title if page_title != "New job" else "New training job")
        self.idle()

    def pick(self, label: str, option: str) -> None:
        self.page.get_by_role("combobox", name=label, exact=True).click()
        self.page.keyboard.type(option)
        try:
            self.page.get_by_role("option", name=option).first.click()
        except Exception:
            self.shot(f"failed_pick_{label.replace(' ', '_')}")
            shown = self.page.get_by_role("option").all_inner_texts()
            raise AssertionError(f"no option {option!r} in {label!r}: {shown}") from None
        self.idle()

    def sign_in(self, name: str) -> None:
        self.page.get_by_label("Username", exact=True).fill(name)
        self.page.get_by_label("Password", exact=True).fill(PASSWORD)
        self.press("Sign in")
        self.see("Job monitor")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.live.shots / f"{name}.png"))


def api_token(live: Live, name: str) -> dict[str, str]:
    answer = httpx.post(f"{live.api}/login", json={"username": name, "password": PASSWORD})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def dataset_file(tmp: Path) -> Path:
    from tests.conftest import make_rows

    path = tmp / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in make_rows(80)))
    return path


TINY_JOB = {"max steps": "16", "batch size": "8", "eval steps": "8"}


def submit_tiny_job(ui: Ui, name: str) -> None:
    ui.go("New job")
    ui.see("reviews@")
    ui.pick("base model", "tiny-bert (local)")
    ui.type("model name", name)
    ui.type("max steps", TINY_JOB["max steps"])
    ui.page.get_by_text("Advanced settings").click()
    ui.type("batch size", TINY_JOB["batch size"])
    ui.type("eval steps", TINY_JOB["eval steps"])
    ui.shot("new_job")
    ui.press("Start training")
    ui.see("queued (position")


def test_the_whole_platform_in_a_browser(browser: object, live: Live) -> None:
    ui = Ui(browser, live)
    ui.shot("signin")
    ui.sign_in("alice")

    ui.go("Datasets")
    ui.type("Dataset name", "reviews")
    ui.page.locator('input[type="file"]').set_input_files(str(dataset_file(live.tmp)))
    ui.idle()
    ui.press("Upload")
    ui.see("registered as reviews@")
    ui.shot("datasets")

    submit_tiny_job(ui, "first")
    # a second run to compare with, submitted over HTTP: it queues behind the first
    alice = api_token(live, "alice")
    ref = httpx.get(f"{live.api}/datasets", headers=alice).json()[0]["ref"]
    second = {"train_file": ref, "base_model": "tiny-bert", "model_name": "second",
              "max_steps": 12, "batch_size": 8, "eval_steps": 6, "learning_rate": 0.01}  # fmt: skip
    queued = httpx.post(f"{live.api}/train", json=second, headers=alice)
    assert queued.status_code == 202, queued.text

    ui.go("Job monitor")  # the job just submitted is the one watched
    ui.see("Queue position")
    ui.shot("job_running")
    ui.see("done: registered as first@1", timeout=JOB_SECONDS)
    try:  # a curve drawn
        ui.page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=STEP)
    except Exception:
        ui.shot("job_no_curve")
        raise AssertionError(live.logs()) from None
    ui.shot("job_succeeded")
    second_id = queued.json()["task_id"]
    wait_for(
        lambda: (
            httpx.get(f"{live.api}/task/{second_id}", headers=alice).json()["state"]
            in {"succeeded", "failed"}
        ),
        JOB_SECONDS / 1000,
        "the second job",
        1.0,
    )

    ui.go("Experiments")
    box = ui.page.get_by_label("Runs to compare (2 to 4)")
    for _ in range(2):
        box.click()
        ui.page.get_by_role("option").first.click()
        ui.idle()
    ui.see("Train loss, overlaid")
    ui.see("Per-class report")
    ui.page.wait_for_timeout(2000)  # the charts draw after the page settles
    ui.shot("experiments_compare")

    ui.go("Sign out")
    ui.press("Sign out")
    ui.see("you are signed out")

    ui.sign_in("root")
    ui.go("Model registry")
    ui.pick("Card", "first@1")
    ui.pick("New stage", "Production")
    ui.page.get_by_label("Reason", exact=True).fill("browser end-to-end test")
    ui.press("Change stage")
    ui.see("→ Production")
    ui.shot("registry")
    ui.go("Audit log")
    ui.see("the audit chain verifies")
    ui.shot("audit")
    ui.go("Sign out")
    ui.press("Sign out")

    ui.sign_in("alice")
    ui.go("Playground")
    ui.type("Model", "first@production")
    ui.page.get_by_label("Texts, one per line").fill("a wonderful film\nan awful film")
    ui.press("Classify")
    ui.see("2 texts in")
    ui.shot("playground")
    ui.go("Sign out")
    ui.press("Sign out")
    ui.see("Sign in to loralab")
    ui.page.close()


def test_no_peeking_and_a_revoked_token_returns_to_sign_in(browser: object, live: Live) -> None:
    alice = api_token(live, "alice")
    jobs = httpx.get(f"{live.api}/tasks", headers=alice).json()
    assert jobs, "the first test queues alice's jobs"
    ui = Ui(browser, live)
    ui.sign_in("bob")
    ui.type("Job id", jobs[0]["task_id"])
    ui.see(f"no job '{jobs[0]['task_id']}'")
    assert ui.page.get_by_text("Queue position").count() == 0
    ui.shot("jobs_not_yours")

    ui.go("Playground")
    ui.page.get_by_label("Texts, one per line").fill("typed before the token was revoked")
    ui.page.get_by_label("Texts, one per line").press("Tab")
    ui.idle()
    root = api_token(live, "root")
    reset = httpx.post(  # bumps bob's token version: his token is revoked
        f"{live.api}/users/bob/password", json={"new_password": PASSWORD}, headers=root
    )
    assert reset.status_code == 200, reset.text
    ui.press("Classify")
    ui.see("your session has ended")
    ui.shot("signin_after_revoke")
    ui.sign_in("bob")
    ui.go("Playground")
    typed = ui.page.get_by_label("Texts, one per line").input_value()
    assert typed == "typed before the token was revoked"
    ui.page.close()
