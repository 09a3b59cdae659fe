"""A prediction service on a machine that has never seen the model: the first answer (fetch from
the shared artifact store + load), then warm latency; and the same start with the cache kept.

What runs (all real, on this machine)::

    .venv/bin/python bench/cold_machine.py                  # the default model (minilm-l6)
    .venv/bin/python bench/cold_machine.py --requests 100   # quicker

1. shared services: an S3-compatible server (moto) and an MLflow tracking server whose artifacts
   live in a bucket on it (``--serve-artifacts``), and one SQLite platform database holding the
   registry (``registry.backend=database``), as the machines of ``docs/scale-out.md`` share them;
2. machine A (this process, its own results home) trains the default recipe
   (``configs/demo.yaml``) for ``--train-steps`` steps, registers it and promotes it;
3. machine B (another results home and an empty cache) starts ``loralab serve`` for
   ``NAME@production``: seconds from the process start to its first ``POST /predict`` answer
   (the version is fetched from the bucket, checked, loaded, merged and exported to ONNX);
   then ``--requests`` one-at-a-time requests over one keep-alive connection (warm p50/p99);
4. B restarts with its cache kept: the same first-answer time without the fetch and export.

Nothing is asserted: the figures go to the README's Performance section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.services import BIN, free_port, kill_group  # noqa: E402
from tests.integration.shared_services import shared_stack  # noqa: E402

TEXT = "An absolute delight from start to finish, I loved it."


def train_and_promote(home: Path, env: dict[str, str], steps: int) -> str:
    """Machine A: the demo recipe for ``steps`` steps, registered and promoted (NAME@VERSION)."""
    from loralab.experiments import service as experiments
    from loralab.registry.service import RegistryService
    from loralab.settings import Settings
    from loralab.training import load_config

    os.environ.update(env)  # Settings() below reads them, like a process of machine A would
    settings = Settings()
    config = load_config(
        ROOT / "configs/demo.yaml",
        [f"max_steps={steps}", f"train_file={ROOT / 'data/samples/sentiment_en.csv'}"],
    )
    result = experiments.train(settings, config, model_name="cold")
    if result.status != "succeeded":
        raise SystemExit(f"training on machine A ended {result.status}")
    registry = RegistryService(settings)
    ref = "cold@1"
    registry.transition(ref, "Production", "bench", "cold-machine bench", force=True)
    registry.close()
    return ref


def first_answer(env: dict[str, str], cwd: Path, port: int) -> tuple[subprocess.Popen, float]:
    """Start ``loralab serve`` and poll ``/predict`` until it answers: (process, seconds)."""
    log = (cwd / "serve.log").open("ab")
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "loralab"), "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/predict"
    deadline = start + 600
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"loralab serve exited {process.returncode}; see {cwd}/serve.log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, json={"text": TEXT}, timeout=60).status_code == 200:
                return process, time.perf_counter() - start
        time.sleep(0.05)
    raise SystemExit("no answer in 600 s")


def warm_latency(port: int, requests: int) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for i in range(requests + 20):
            start = time.perf_counter()
            answer = client.post("/predict", json={"text": f"{TEXT} ({i})"})
            elapsed = (time.perf_counter() - start) * 1000
            answer.raise_for_status()
            if i >= 20:  # the first few warm the connection and the allocator
                times.append(elapsed)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
    }


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-steps", type=int, default=30, help="steps machine A trains")
    parser.add_argument("--requests", type=int, default=300, help="warm requests on machine B")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/out/cold_machine.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="loralab-cold-") as tmp_name:
        tmp = Path(tmp_name)
        with shared_stack(tmp / "shared", f"sqlite:///{tmp / 'mlflow.db'}") as stack:
            shared = {
                "LORALAB_MLFLOW__TRACKING_URI": stack.tracking_uri,
                "LORALAB_DB__URL": f"sqlite:///{tmp / 'platform.db'}",
                "LORALAB_REGISTRY__BACKEND": "database",
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }

            def machine(name: str, **extra: str) -> dict[str, str]:
                home = tmp / name
                home.mkdir(exist_ok=True)
                return {
                    **os.environ,
                    **shared,
                    "LORALAB_STORAGE__RESULTS_DIR": str(home / "results"),
                    "LORALAB_REGISTRY__CARD_DIR": str(home / "cards"),
                    "LORALAB_STORAGE__CACHE_DIR": str(home / "cache"),
                    **extra,
                }

            from loralab.bootstrap import prepare_database
            from loralab.settings import Settings

            env_a = machine("A")
            os.environ.update(env_a)
            prepare_database(Settings())
            print(f"machine A trains {args.train_steps} steps of configs/demo.yaml ...")
            ref = train_and_promote(tmp / "A", env_a, args.train_steps)

            env_b = machine("B", LORALAB_SERVING__DEFAULT_MODEL="cold@production")
            port = free_port()
            process, cold = first_answer(env_b, tmp / "B", port)
            fetched = folder_mb(tmp / "B" / "cache" / "models")
            onnx = folder_mb(tmp / "B" / "cache" / "onnx") if (tmp / "B/cache/onnx").is_dir() else 0
            warm = warm_latency(port, args.requests)
            kill_group(process)
            process, restart = first_answer(env_b, tmp / "B", port)
            kill_group(process)

    load = os.getloadavg()[0]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min_at_end": round(load, 2),
        "model": ref,
        "cold_first_answer_s": round(cold, 2),
        "fetched_mb": fetched,
        "onnx_export_mb": onnx,
        "warm": warm,
        "restart_with_cache_first_answer_s": round(restart, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(
        f"\ncold machine: first answer {cold:.2f} s (fetch {fetched} MB + load + merge + ONNX "
        f"export); warm p50 {warm['p50_ms']} ms, p99 {warm['p99_ms']} ms; restart with the "
        f"cache kept: {restart:.2f} s"
    )


if __name__ == "__main__":
    main()
