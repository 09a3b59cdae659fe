"""Web UI benchmark: how long each page takes to render with 500 jobs, 200 runs and 1,000
model cards present.

What runs (all on this machine)::

    .venv/bin/python bench/ui_bench.py                 # 500 jobs, 200 runs, 1,000 cards
    .venv/bin/python bench/ui_bench.py --renders 5     # quick check

A temporary results home is filled through the services: a dataset registered as from the CLI,
``--jobs`` jobs submitted by 25 users through the job service (a queue that keeps them queued:
no worker, so all of them stay visible as queued with a queue position), ``--runs`` run folders
with a config and final metrics (what ``GET /experiments`` reads), and ``--cards`` model cards
in the card store. The real platform API (``create_app``) answers the UI over HTTP from uvicorn in
a thread (loopback socket), and each page renders under Streamlit's ``AppTest`` as an admin (who
sees everything: the heaviest view) ``--renders`` times after one warm-up. Reported per page:
p50 and p95 of the wall time of one render (every API call the page makes plus the render).
Target: p95 under 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import load_before_measuring  # noqa: E402

SECRET = "a-ui-bench-signing-secret-that-is-long-enough-0123456"
PAGES = {
    "jobs": "Job monitor",
    "new_job": "New job",
    "experiments": "Experiments",
    "datasets": "Datasets",
    "registry": "Model registry",
    "playground": "Playground",
    "audit": "Audit log",
}


class HeldQueue:
    """A broker that accepts every job and never delivers it: the jobs stay queued."""

    def enqueue(self, job_id: str, queue: str) -> None:
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def card(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "name": f"model-{i % 400}",
        "version": str(i // 400 + 1),
        "run_id": f"run{i}",
        "base_model": rng.choice(["minilm-l6", "distilbert-base-uncased", "roberta-base"]),
        "language": rng.choice(["English", "Chinese"]),
        "task": "sentiment",
        "description": f"sentiment classifier {i}",
        "labels": ["negative", "positive"],
        "metrics": {"accuracy": round(rng.uniform(0.5, 0.99), 4), "macro_f1": 0.8},
        "tags": {},
        "dataset": {"name": "reviews", "version": "1", "fingerprint": f"fp{i % 50}"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
        "training": {},
        "created_by": "bench",
        "created_at": 1_700_000_000 + i,
        "stage": rng.choice(["Staging", "Production", "Archived"]),
        "embedding": [0.0] * 383 + [1.0],
    }


def fill(tmp: Path, jobs: int, runs: int, cards: int) -> Any:
    """The settings and services of a results home holding the data; returns the API app."""
    from tests.conftest import make_rows, write_csv

    from loralab.bootstrap import build_services
    from loralab.datasets import service as datasets
    from loralab.entrypoints.api.app import create_app
    from loralab.identity import Actor, RequestContext
    from loralab.jobs.requests import TrainRequest
    from loralab.registry.cards import validate_card
    from loralab.registry.store import CardStore
    from loralab.settings import (
        AuthSettings,
        DbSettings,
        QueueSettings,
        RegistrySettings,
        Settings,
        StorageSettings,
    )
    from loralab.training.config import TrainConfig
    from loralab.training.files import atomic_write_json
    from loralab.training.runs import create_run

    settings = Settings(
        storage=StorageSettings(results_dir=tmp / "results"),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        db=DbSettings(url=f"sqlite:///{tmp / 'platform.db'}"),
        auth=AuthSettings(secret_key=SECRET),  # type: ignore[arg-type]
        queue=QueueSettings(max_active_per_user=10_000),
    )
    datasets.register_dataset(
        settings, "reviews", write_csv(tmp / "reviews.csv", make_rows(200)), user="ops"
    )
    found = build_services(settings, queue=HeldQueue())
    app = create_app(settings, found)
    root = found.users.create_user("root", "correct horse battery", "admin")
    people = [found.users.create_user(f"user{i}", "correct horse battery", "user")
              for i in range(25)]  # fmt: skip
    ctx = RequestContext(client="127.0.0.1", request_id=None)
    for i in range(jobs):  # half of them root's: the admin's own job list is full too
        person = root if i % 2 == 0 else people[i % len(people)]
        actor = Actor(id=person.id, username=person.username, role=person.role)
        found.jobs.submit(actor, TrainRequest(train_file="reviews@latest", max_steps=10), ctx)
    for i in range(runs):
        config = TrainConfig(experiment=f"exp{i % 10}", train_file="reviews@1")
        run = create_run(settings.storage.results_dir, config, f"20260101-{i:06d}-abcdef")
        final = {"accuracy": round(0.7 + 0.001 * i, 4), "macro_f1": 0.88}
        atomic_write_json(run.metrics, {"status": "succeeded", "final": final, "report": {}})
        state = {"status": "succeeded", "base_model": config.base_model, **final,
                 "started_at": 1_767_225_600 + 600 * i}  # fmt: skip
        atomic_write_json(run.state, state)
    store = CardStore(settings.registry_card_dir)
    rng = random.Random(0)
    for i in range(cards):
        store.write(validate_card(card(i, rng)))
    return app


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(app: Any) -> str:
    """The API under uvicorn in a thread, on a free port; its URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def render_times(url: str, page: str, renders: int) -> list[float]:
    import httpx
    from streamlit.testing.v1 import AppTest

    from loralab.entrypoints.ui import session

    login = httpx.post(
        f"{url}/login", json={"username": "root", "password": "correct horse battery"}
    )
    token, user = login.json()["access_token"], login.json()["user"]

    def script(module: str) -> None:
        import importlib

        from loralab.entrypoints.ui import session

        session.run_page(importlib.import_module(f"loralab.entrypoints.ui.pages.{module}").render)

    times = []
    for i in range(renders + 1):
        test = AppTest.from_function(script, args=(page,), default_timeout=60)
        test.session_state[session.API_URL_KEY] = url
        test.session_state[session.TOKEN_KEY] = token
        test.session_state[session.USER_KEY] = user
        start = time.perf_counter()
        test.run()
        if i:  # the first render warms imports and caches
            times.append(time.perf_counter() - start)
        if test.exception or test.error:
            problems = [e.value for e in test.exception] + [e.value for e in test.error]
            raise SystemExit(f"page {page} failed: {problems}")
    return times


def screenshots(url: str, folder: Path) -> None:
    """Every page with the full data, in Debian's chromium (headless), as ``full_<page>.png``."""
    import shutil
    import subprocess

    import httpx
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("--screenshots needs chromium (apt-get install chromium)")
    port = free_port()
    app_file = ROOT / "src/loralab/entrypoints/ui/app.py"
    args = [sys.executable, "-m", "streamlit", "run", str(app_file), "--server.port", str(port)]
    args += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    args += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    args += ["--client.toolbarMode", "viewer", "--", "--api-url", url]
    ui = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=chromium, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_label("Username", exact=True).fill("root")
            page.get_by_label("Password", exact=True).fill("correct horse battery")
            page.get_by_role("button", name="Sign in", exact=True).click()
            page.get_by_text("Job monitor").first.wait_for()
            for name, title in PAGES.items():
                page.get_by_role("link", name=title, exact=True).click()
                page.wait_for_timeout(1500)
                page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
                page.screenshot(path=str(folder / f"full_{name}.png"))
            browser.close()
    finally:
        ui.terminate()
        ui.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cards", type=int, default=1000)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ui_bench.json")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="also save every page, full data, as PNGs in this folder")  # fmt: skip
    args = parser.parse_args()
    load = load_before_measuring()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        url = serve(fill(Path(folder), args.jobs, args.runs, args.cards))
        if args.screenshots:
            screenshots(url, args.screenshots)
        print(f"filled {args.jobs} jobs, {args.runs} runs, {args.cards} cards "
              f"in {time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
        results = {}
        for page, title in PAGES.items():
            times = render_times(url, page, args.renders)
            results[page] = {
                "p50_s": round(statistics.median(times), 3),
                "p95_s": round(percentile(times, 0.95), 3),
            }
            print(f"{title:15} p50 {results[page]['p50_s']:.3f} s  "
                  f"p95 {results[page]['p95_s']:.3f} s", flush=True)  # fmt: skip
    worst = max(r["p95_s"] for r in results.values())
    print(f"worst page p95 {worst:.3f} s (target < 1.5 s): {'ok' if worst < 1.5 else 'SLOW'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"data": {"jobs": args.jobs, "runs": args.runs, "cards": args.cards},
              "renders": args.renders, "load_before": load, "pages": results}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
