"""Performance of the prediction service (numbers, not pass/fail), against the Hugging Face
``pipeline("text-classification")`` on the same merged model.

One run measures, on one LoRA model of the default base (minilm-l6):

  1. the model: trains a quick MiniLM LoRA adapter on a slice of SST-2 into a temporary results
     home (``loralab.experiments.service.train``), unless ``--run-dir`` names a results home
     that already holds a finished run;
  2. in-process latency of one text: ``PredictionService.predict_sync`` in ``adapters`` and in
     ``merged`` mode vs ``pipeline(...)(text)`` on the merged model (same precision as loralab,
     and fp32 for reference);
  3. HTTP latency, one keep-alive client, against ``loralab serve`` (``create_serving_app`` run
     by uvicorn in a separate process, exactly as ``loralab serve`` runs it);
  4. HTTP throughput with 32 concurrent clients, with micro-batching (several wait values) and
     without (``micro_batch_size=1``), the same number of requests each;
  5. memory: RSS of fresh processes holding 1 and 10 adapters of one base in one ``ModelPool``
     (10 distinct adapters: copies of the run with perturbed LoRA weights), and 10 merged models
     for contrast;
  6. issue 14's targets, side by side in the same run: the HF pipeline (fp32, merged) as the
     baseline; loralab in process with the hot model on ONNX Runtime (and on PyTorch fp32 /
     bf16, as levers); HTTP ``/predict`` p50 for one keep-alive client (uvicorn's uvloop +
     httptools, and asyncio + h11 as a lever); req/s of 32 clients vs the pipeline's batch-32
     texts/s; label agreement with fp32 PyTorch on all of SST-2 dev and the largest probability
     difference; cold start (process start -> first answer) with an empty and a warm ONNX cache;
     and the levers answer->JSON (pydantic, json, orjson), tokenizer paths and dynamic int8.

Typical texts: the first ``--texts`` rows of SST-2 ``dev.tsv`` from ../shared/data/sst2 (beside
the repository, not part of the project; Socher et al., 2013, via GLUE); pass another folder
holding ``train.tsv`` and ``dev.tsv`` with ``--data``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_bench.py            # full run (~11 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_bench.py --quick    # smoke run (~3 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_bench.py --targets-only \
        --train-steps 200 --train-rows 6400                          # issue 14's table only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import shutil
import socket
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from machine import load_before_measuring  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sst2"
DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "serve_bench.json"
EXPERIMENT = "servebench"

TARGET_INPROC_P50_MS = 5.0
TARGET_HTTP_P50_MS = 10.0
TARGET_BATCHING_RATIO = 2.0
TARGET_TEN_ADAPTERS_MB = 100.0
MB = 1e6


# -- helpers ------------------------------------------------------------------------------------
def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(latencies_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p90_ms": round(pct(ms, 90), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def time_each(fn: Callable[[str], Any], texts: list[str], warmup: int) -> list[float]:
    for text in texts[:warmup]:
        fn(text)
    out = []
    for text in texts:
        start = time.perf_counter()
        fn(text)
        out.append(time.perf_counter() - start)
    return out


def read_tsv(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)  # header
        for row in reader:
            if len(row) >= 2 and row[0].strip():
                rows.append((row[0].strip(), row[1].strip()))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int | None = None) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / MB


def make_settings(home: Path, **serving: Any) -> Any:
    from loralab.settings import RegistrySettings, ServingSettings, Settings, StorageSettings

    return Settings(
        storage=StorageSettings(results_dir=home),
        registry=RegistrySettings(card_dir=home.parent / "data" / "model_registry"),
        serving=ServingSettings(**serving),
    )


def matmul_gflops(dtype: torch.dtype, size: int = 2048, reps: int = 5) -> float:
    """Machine check: a size² matmul on torch's threads (a quiet 2-core machine of this kind
    reads about 200 GFLOP/s in float32 and 930 in bfloat16 for 2048² on 2 threads)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - start) / 1e9


# -- 1. the model -------------------------------------------------------------------------------
def train_model(home: Path, data: Path, rows: int, steps: int) -> tuple[str, float]:
    """Train a quick LoRA adapter into ``home``; returns (run id, seconds)."""
    from loralab.experiments.service import train
    from loralab.training import TrainConfig

    slices = home.parent / "data" / "sst2-slice"
    slices.mkdir(parents=True, exist_ok=True)
    for name, limit in (("train.tsv", rows), ("dev.tsv", 400)):
        kept = read_tsv(data / name, limit)
        with (slices / name).open("w", encoding="utf-8") as fh:
            fh.write("sentence\tlabel\n")
            fh.writelines(f"{text}\t{label}\n" for text, label in kept)
    config = TrainConfig(
        experiment=EXPERIMENT,
        base_model="minilm-l6",
        train_file=str(slices / "train.tsv"),
        validation_file=str(slices / "dev.tsv"),
        text_column="sentence",
        label_column="label",
        max_steps=steps,
        eval_steps=steps,
        batch_size=32,
        learning_rate=2e-3,
        early_stopping_patience=0,
    )
    start = time.perf_counter()
    result = train(make_settings(home), config)
    seconds = time.perf_counter() - start
    if result.status != "succeeded":
        raise SystemExit(f"training failed: {result.status}")
    return result.run.run_id, seconds


def train_process(home: str, data: str, rows: int, steps: int, queue: Any) -> None:
    """Child process: training leaves nothing behind (threads, caches) in the measuring one."""
    import logging

    quiet_transformers()
    for name in ("loralab", "mlflow", "alembic"):  # data warnings and store set-up lines
        logging.getLogger(name).setLevel(logging.ERROR)
    queue.put(train_model(Path(home), Path(data), rows, steps))


def run_child(target: Callable[..., None], *args: Any) -> Any:
    """Run ``target(*args, queue)`` in a fresh (spawned) process; returns what it puts."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise SystemExit(f"{target.__name__} exited with {proc.exitcode}") from None
    proc.join(60)
    queue.close()
    queue.join_thread()
    return result


def newest_run(home: Path) -> str:
    from loralab.training.runs import list_runs

    runs = [r for r in list_runs(home) if r.adapter.is_dir() and r.model_info.is_file()]
    if not runs:
        raise SystemExit(f"--run-dir {home}: no finished run with a saved adapter under it")
    return runs[0].run_id


# -- 2./3. latency of one text, in process and over HTTP -----------------------------------------
def fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms (n={s['n']})"


def latency_contenders(
    home: Path, run_id: str, urls: dict[str, str], stack: contextlib.ExitStack
) -> tuple[dict[str, Callable[[str], Any]], str]:
    """Every way to classify one text, by name: loralab in process (adapters, merged), the HF
    pipeline on the merged model (loralab's precision and fp32), and HTTP to running servers."""
    import httpx
    from transformers import pipeline

    from loralab.serving.service import PredictionService
    from loralab.training.inference import load_predictor
    from loralab.training.runs import find_run

    contenders: dict[str, Callable[[str], Any]] = {}
    precision = "fp32"
    for mode in ("adapters", "merged"):
        service = PredictionService(make_settings(home, mode=mode), model=run_id)
        service.load_default()
        stack.callback(service.close)
        precision = service.pool.precision
        contenders[f"loralab predict_sync ({mode})"] = service.predict_sync
    run = find_run(home, run_id)
    for prec in dict.fromkeys([precision, "fp32"]):
        predictor = load_predictor(run, device="cpu", precision=prec)
        contenders[f"HF pipeline, merged ({prec})"] = pipeline(
            "text-classification",
            model=predictor.model,
            tokenizer=predictor.tokenizer,
            device=torch.device("cpu"),
        )
    for mode, url in urls.items():
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))

        def call(text: str, c: httpx.Client = client) -> float:
            response = c.post("/predict", json={"text": text})
            response.raise_for_status()
            return float(response.json()["latency_ms"])

        contenders[f"HTTP /predict, 1 client ({mode})"] = call
    return contenders, precision


def bench_latency(
    contenders: dict[str, Callable[[str], Any]], texts: list[str], warmup: int, block: int = 25
) -> dict[str, dict[str, Any]]:
    """One call at a time, timed from call to answer. The contenders take turns in blocks of
    ``block`` texts (so slow drifts in background load fall on all alike); each block starts
    after a short pause and two untimed calls, so one contender's idle-spinning threads (torch's
    OpenMP pool, in this process or a server's) never run beside another's timed calls."""
    for text in texts[:warmup]:
        for fn in contenders.values():
            fn(text)
    lats: dict[str, list[float]] = {name: [] for name in contenders}
    server_ms: dict[str, list[float]] = {name: [] for name in contenders if "HTTP" in name}
    for start_i in range(0, len(texts), block):
        chunk = texts[start_i : start_i + block]
        for name, fn in contenders.items():
            time.sleep(0.2)
            for text in texts[:2]:
                fn(text)
            for text in chunk:
                start = time.perf_counter()
                answer = fn(text)
                lats[name].append(time.perf_counter() - start)
                if name in server_ms:
                    server_ms[name].append(answer)
    out: dict[str, dict[str, Any]] = {}
    for name, values in lats.items():
        out[name] = summary(values)
        if name in server_ms:
            out[name]["server_model_p50_ms"] = round(pct(server_ms[name], 50), 3)
    return out


# -- 4. concurrent clients over HTTP ------------------------------------------------------------
def serve_process(home: str, run_id: str, port: int, serving: dict[str, Any]) -> None:
    """Child process: ``loralab serve`` as the CLI runs it (uvicorn.run on the app)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import uvicorn

    from loralab.entrypoints.api.serving_app import create_serving_app

    quiet_transformers()
    serving = dict(serving)
    options = serving.pop("uvicorn", {})  # loop / http choices (a lever); default: as the CLI
    app = create_serving_app(make_settings(Path(home), **serving), model=run_id)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **options)


class Server:
    """A prediction service in its own process (so load-generating clients don't share its
    GIL), on a free port."""

    def __init__(self, home: Path, run_id: str, **serving: Any) -> None:
        self.serving = serving
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ctx = mp.get_context("spawn")
        self.proc = ctx.Process(
            target=serve_process, args=(str(home), run_id, self.port, serving), daemon=True
        )
        self.proc.start()

    def wait_ready(self, timeout_s: float = 240) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while True:
            if not self.proc.is_alive():
                raise SystemExit(f"server {self.serving} exited with {self.proc.exitcode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).json().get("model_loaded"):
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"server {self.serving} did not load its model in {timeout_s} s")
            time.sleep(0.25)

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the server's texts-per-forward-pass histogram."""
    import httpx

    total = count = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("loralab_predict_batch_size_sum"):
            total = float(line.split()[-1])
        elif line.startswith("loralab_predict_batch_size_count"):
            count = float(line.split()[-1])
    return total, count


async def _post_loop(
    host: str, port: int, bodies: list[bytes], counter: list[int], total: int, lats: list[float]
) -> int:
    """One keep-alive HTTP/1.1 connection sending ``POST /predict`` back to back; returns the
    count of non-200 answers. A minimal client on purpose: the load generator shares the cores
    with the server, and httpx costs ~2-3 ms of CPU per request, enough to starve it."""
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while counter[0] < total:
            body = bodies[counter[0] % len(bodies)]
            counter[0] += 1
            start = time.perf_counter()
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lats.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors += 1
    finally:
        writer.close()
    return errors


async def _load(url: str, texts: list[str], total: int, clients: int) -> dict[str, Any]:
    """``clients`` keep-alive connections, each sending its next request as soon as the last
    is answered, until ``total`` requests are done."""
    host, port = url.removeprefix("http://").split(":")
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    lats: list[float] = []
    counter = [0]
    cpu0, start = time.process_time(), time.perf_counter()
    errors = await asyncio.gather(
        *(_post_loop(host, int(port), bodies, counter, total, lats) for _ in range(clients))
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    out: dict[str, Any] = summary(lats)
    out.update(
        requests=total,
        seconds=round(wall, 3),
        requests_per_s=round(total / wall, 1),
        errors=sum(errors),
        client_cpu_share=round(cpu / wall, 2),
    )
    return out


def load_round(server: Server, texts: list[str], total: int, clients: int) -> dict[str, Any]:
    import psutil

    s0, c0 = batch_stats(server.url)
    srv = psutil.Process(server.pid)
    t0 = srv.cpu_times()
    res = asyncio.run(_load(server.url, texts, total, clients))
    t1 = srv.cpu_times()
    s1, c1 = batch_stats(server.url)
    res["mean_batch"] = round((s1 - s0) / max(c1 - c0, 1), 1)
    res["server_cpu_share"] = round((t1.user + t1.system - t0.user - t0.system) / res["seconds"], 2)
    return res


def bench_concurrent(
    servers: dict[str, Server], texts: list[str], total: int, clients: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Rounds interleave the servers (background load falls on all alike); the best round of
    each is kept, every round's req/s is recorded."""
    for server in servers.values():  # warm-up
        asyncio.run(_load(server.url, texts, min(total, 200), clients))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for r in range(rounds):
        for name, server in servers.items():
            res = load_round(server, texts, total, clients)
            runs[name].append(res)
            print(
                f"  round {r + 1}, {name}: {res['requests_per_s']:.0f} req/s, p50 "
                f"{res['p50_ms']:.1f} ms, mean batch {res['mean_batch']}"
                + (f", {res['errors']} errors" if res["errors"] else ""),
                flush=True,
            )
    out = {}
    for name, results in runs.items():
        best = max(results, key=lambda x: x["requests_per_s"])
        best["rounds_requests_per_s"] = [x["requests_per_s"] for x in results]
        best["median_requests_per_s"] = round(
            statistics.median(x["requests_per_s"] for x in results), 1
        )
        out[name] = best
    return out


# -- 5. memory ----------------------------------------------------------------------------------
def make_adapter_copies(home: Path, run_id: str, count: int, dest: Path) -> list[Path]:
    """``count`` copies of the run folder, each with its LoRA weights perturbed (distinct
    adapters), written back as safetensors."""
    from safetensors.torch import load_file, save_file

    from loralab.training.runs import find_run

    run = find_run(home, run_id)
    out = []
    gen = torch.Generator().manual_seed(0)
    for i in range(count):
        target = dest / EXPERIMENT / f"{run_id}-copy{i:02d}"
        shutil.copytree(run.root, target, ignore=shutil.ignore_patterns("checkpoint-*"))
        weights = target / "artifacts" / "adapter" / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        for name, tensor in tensors.items():
            if "lora_" in name:
                noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float32)
                scale = 0.5 * float(tensor.float().std()) + 1e-3
                tensors[name] = (tensor.float() + scale * noise).to(tensor.dtype).contiguous()
        save_file(tensors, str(weights), metadata={"format": "pt"})
        out.append(target)
    return out


def memory_process(kind: str, run_dirs: list[str], queue: Any) -> None:
    """Child process: RSS before and after loading 1 and then all of ``run_dirs``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psutil

    quiet_transformers()
    from loralab.serving.engine import ModelPool
    from loralab.serving.resolve import ModelHandle
    from loralab.training.inference import load_predictor
    from loralab.training.runs import RunPaths

    proc = psutil.Process()

    def rss() -> float:
        gc.collect()
        return proc.memory_info().rss / MB

    text = "a gripping , beautifully acted film ."
    result: dict[str, Any] = {"kind": kind, "rss_start_mb": rss()}
    if kind == "adapters":
        pool = ModelPool(cache_size=len(run_dirs) + 1, device="cpu", precision="auto")
        handles = []
        for i, d in enumerate(run_dirs):
            run = RunPaths(Path(d))
            info = json.loads(run.model_info.read_text(encoding="utf-8"))
            handles.append(
                ModelHandle(
                    key=f"adapter-{i:02d}",
                    run=run,
                    base_model=str(info["base_model"]),
                    language=str(info.get("language", "")),
                    labels=tuple(str(x) for x in info["labels"]),
                    max_length=int(info["max_length"]),
                )
            )
        pool.ensure(handles[0])
        pool.predict(handles[0], [text])
        result["rss_1_mb"] = rss()
        for h in handles[1:]:
            pool.ensure(h)
            pool.predict(h, [text])
        result["rss_all_mb"] = rss()
        result["loaded"] = len(pool.loaded())
        result["bases"] = len(pool._bases)  # noqa: SLF001 - one shared base is the point
        probe = [text, "dull , lifeless and far too long .", "it 's not bad , just forgettable ."]
        outputs = {
            tuple(round(p.probabilities[k], 6) for p in pool.predict(h, probe) for k in h.labels)
            for h in handles
        }
        result["distinct_outputs"] = len(outputs)
        # switching adapter on every request: round-robin vs the same adapter
        lat_rr, lat_same = [], []
        for i in range(200):
            h = handles[i % len(handles)]
            t0 = time.perf_counter()
            pool.predict(h, [text])
            lat_rr.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pool.predict(handles[0], [text])
            lat_same.append(time.perf_counter() - t0)
        result["round_robin_p50_ms"] = round(pct(lat_rr, 50) * 1000, 3)
        result["same_adapter_p50_ms"] = round(pct(lat_same, 50) * 1000, 3)
    else:
        models = []
        for i, d in enumerate(run_dirs):
            predictor = load_predictor(RunPaths(Path(d)), device="cpu", precision="auto")
            predictor.predict([text])
            models.append(predictor)
            if i == 0:
                result["rss_1_mb"] = rss()
        result["rss_all_mb"] = rss()
        result["loaded"] = len(models)
    queue.put(result)


def measure_memory(kind: str, run_dirs: list[Path]) -> dict[str, Any]:
    result: dict[str, Any] = run_child(memory_process, kind, [str(d) for d in run_dirs])
    for key in ("rss_start_mb", "rss_1_mb", "rss_all_mb"):
        result[key] = round(result[key], 1)
    result["added_by_rest_mb"] = round(result["rss_all_mb"] - result["rss_1_mb"], 1)
    result["first_model_mb"] = round(result["rss_1_mb"] - result["rss_start_mb"], 1)
    return result


# -- reporting ----------------------------------------------------------------------------------
def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_table(data: dict[str, Any]) -> None:
    lat = data["in_process"]
    prec = data["settings"]["precision"]
    hf_same = lat[f"HF pipeline, merged ({prec})"]["p50_ms"]
    hf32 = lat["HF pipeline, merged (fp32)"]["p50_ms"]
    lines: list[tuple[str, str, str, str, str]] = []
    for name, s in lat.items():
        lines.append(
            (
                name,
                f"{s['p50_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                f"{ratio(s['p50_ms'], hf_same)} / {ratio(s['p50_ms'], hf32)}",
                f"< {TARGET_INPROC_P50_MS:g}" if name.startswith("loralab") else "",
            )
        )
    for name, s in data["http_single"].items():
        lines.append(
            (
                name,
                f"{s['p50_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                f"{ratio(s['p50_ms'], hf_same)} / {ratio(s['p50_ms'], hf32)}",
                f"< {TARGET_HTTP_P50_MS:g}",
            )
        )
    print(f"\n== one text at a time: latency (ms); ratio = p50 / HF pipeline p50 ({prec} / fp32)")
    head = ("", "p50", "p99", "vs HF pipeline", "target p50")
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(5)]
    for row in [head, *lines]:
        print(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for name, s in data["http_single"].items():
        print(f"  ({name}: server-side model work p50 {s['server_model_p50_ms']:.2f} ms)")

    conc = data["http_concurrent"]
    base_rps = conc["no batching (micro_batch_size=1)"]["requests_per_s"]
    print(
        f"\n== {data['settings']['clients']} concurrent clients, "
        f"{data['settings']['requests']} requests each run (best of "
        f"{data['settings']['rounds']}): throughput"
    )
    head2 = ("", "req/s", "vs no batching", "p50 ms", "p99 ms", "batch", "srv cpu", "cli cpu")
    rows2 = [
        (
            name,
            f"{s['requests_per_s']:.0f}",
            ratio(s["requests_per_s"], base_rps),
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{s['mean_batch']:.1f}",
            f"{s['server_cpu_share']:.2f}",
            f"{s['client_cpu_share']:.2f}",
        )
        for name, s in conc.items()
    ]
    widths2 = [max(len(r[i]) for r in [head2, *rows2]) for i in range(len(head2))]
    for row2 in [head2, *rows2]:
        print(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row2, widths2, strict=True))
            )
        )
    best = data["batching"]
    print(
        f"  best wait: {best['best_wait_ms']:g} ms -> {best['best_ratio']:.2f}x over no batching "
        f"(target >= {TARGET_BATCHING_RATIO:g}x); default (2 ms): {best['default_ratio']:.2f}x"
    )
    mem = data["memory"]
    if mem:
        a = mem["adapters"]
        print(
            f"\n== memory: RSS of a fresh process (MB = 10^6 bytes); {a['loaded']} distinct "
            "adapters = copies of the trained run with perturbed LoRA weights, each its own "
            "ModelHandle key"
        )
        print(
            f"  ModelPool, adapters mode: start {a['rss_start_mb']:.0f}, 1 adapter "
            f"{a['rss_1_mb']:.0f} (+{a['first_model_mb']:.0f} for base + adapter), "
            f"{a['loaded']} adapters {a['rss_all_mb']:.0f} -> the other {a['loaded'] - 1} add "
            f"{a['added_by_rest_mb']:.1f} MB (target: < {TARGET_TEN_ADAPTERS_MB:g}); "
            f"{a['bases']} resident base(s); {a['distinct_outputs']} distinct outputs"
        )
        print(
            f"  adapter switch per request: round-robin over {a['loaded']} p50 "
            f"{a['round_robin_p50_ms']:.2f} ms vs same adapter {a['same_adapter_p50_ms']:.2f} ms"
        )
        m = mem.get("merged")
        if m:
            print(
                f"  merged models (load_predictor): start {m['rss_start_mb']:.0f}, 1 model "
                f"{m['rss_1_mb']:.0f}, {m['loaded']} models {m['rss_all_mb']:.0f} -> the other "
                f"{m['loaded'] - 1} add {m['added_by_rest_mb']:.1f} MB"
            )
        srv = data.get("server_rss_mb", {})
        if srv:
            print(
                "  server process RSS after load: "
                + ", ".join(f"{k} {v:.0f}" for k, v in srv.items())
            )


# -- 6. issue 14: the side-by-side targets and the levers ---------------------------------------
TARGET_VS_PIPELINE_INPROC = 0.6
TARGET_VS_PIPELINE_HTTP = 1.3
TARGET_VS_PIPELINE_RPS = 1.2
TARGET_AGREEMENT = 0.995
TARGET_COLD_START_S = 5.0


def agreement(service: Any, dev: list[tuple[str, str]], batch: int = 32) -> dict[str, Any]:
    """Labels of the served hot model (ONNX Runtime) vs the fp32 PyTorch merged model on every
    dev text, the largest difference of any class probability, and both accuracies."""
    from loralab.training.inference import load_predictor

    predictor = load_predictor(service.default.run, device="cpu", precision="fp32")
    texts = [t for t, _ in dev]
    gold = [g for _, g in dev]
    served: list[Any] = []
    for start in range(0, len(texts), batch):
        served.extend(service.pool.predict(service.default, texts[start : start + batch]))
    ref = predictor.predict(texts, batch_size=batch)
    same = sum(a.label_name == b.label_name for a, b in zip(served, ref, strict=True))
    diff = max(
        abs(a.probabilities[k] - b.probabilities[k])
        for a, b in zip(served, ref, strict=True)
        for k in a.probabilities
    )
    return {
        "texts": len(texts),
        "agreement": round(same / len(texts), 5),
        "disagreements": len(texts) - same,
        "max_probability_diff": float(f"{diff:.3g}"),
        "accuracy_served": round(
            sum(p.label_name == g for p, g in zip(served, gold, strict=True)) / len(texts), 4
        ),
        "accuracy_pytorch_fp32": round(
            sum(p.label_name == g for p, g in zip(ref, gold, strict=True)) / len(texts), 4
        ),
    }


def int8_lever(
    run_dir: Path, tmp: Path, texts: list[str], dev: list[tuple[str, str]]
) -> dict[str, Any]:
    """Dynamic int8 (onnxruntime.quantization) of the exported model: agreement with fp32
    PyTorch on dev and p50 of one text, beside the fp32 ONNX model it came from."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from loralab.training.inference import load_predictor
    from loralab.training.onnx_export import OnnxClassifier, export_onnx

    predictor = load_predictor(run_dir, device="cpu", precision="fp32")
    fp32_path = export_onnx(predictor.model, predictor.tokenizer, tmp / "onnx-fp32")
    int8_path = tmp / "onnx-int8" / "model.onnx"
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    labels, max_length = predictor.labels, predictor.max_length
    out: dict[str, Any] = {}
    dev_texts = [t for t, _ in dev]
    ref = predictor.predict(dev_texts)
    for name, path in (("onnx fp32", fp32_path), ("onnx dynamic int8", int8_path)):
        clf = OnnxClassifier(path, predictor.tokenizer)
        got: list[Any] = []
        for start in range(0, len(dev_texts), 32):
            got.extend(clf.classify(dev_texts[start : start + 32], labels, max_length))
        same = sum(a.label_name == b.label_name for a, b in zip(got, ref, strict=True))

        def one(text: str, c: Any = clf) -> Any:
            return c.classify([text], labels, max_length)

        lat = time_each(one, texts, 20)
        out[name] = {
            "agreement": round(same / len(dev_texts), 5),
            "p50_ms": summary(lat)["p50_ms"],
            "size_mb": round(path.stat().st_size / MB, 1),
        }
    return out


def pipeline_batch_rate(pipe: Any, texts: list[str], batch: int = 32, rounds: int = 3) -> float:
    """Texts per second of the HF pipeline given the texts in batches of ``batch`` (best of
    ``rounds`` passes over ``texts``)."""
    pipe(texts[:batch], batch_size=batch)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        pipe(texts, batch_size=batch)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def cold_start(home: Path, run_id: str, text: str, **serving: Any) -> float:
    """Seconds from starting a server process (spawned, as `loralab serve` is started) to its
    first successful ``POST /predict`` answer."""
    import httpx

    start = time.perf_counter()
    server = Server(home, run_id, **serving)
    try:
        deadline = start + 300
        while time.perf_counter() < deadline:
            if not server.proc.is_alive():
                raise SystemExit(f"cold-start server {serving} exited with {server.proc.exitcode}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.post(f"{server.url}/predict", json={"text": text}, timeout=30)
                if answer.status_code == 200:
                    return time.perf_counter() - start
            time.sleep(0.02)
        raise SystemExit("cold-start server gave no answer in 300 s")
    finally:
        server.stop()


def serialization_lever(answer: dict[str, Any], reps: int = 20000) -> dict[str, float]:
    """Microseconds to turn one /predict answer into JSON bytes: what the route does now
    (pydantic model, then its JSON), stdlib json, and orjson."""
    import orjson

    from loralab.entrypoints.api.schemas import PredictResponse

    ways: dict[str, Callable[[], Any]] = {
        "pydantic validate + dump_json (now)": lambda: PredictResponse.model_validate(
            answer
        ).model_dump_json(),
        "json.dumps": lambda: json.dumps(answer).encode(),
        "orjson.dumps": lambda: orjson.dumps(answer),
    }
    out = {}
    for name, fn in ways.items():
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        out[name] = round((time.perf_counter() - start) / reps * 1e6, 2)
    return out


def tokenizer_lever(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, float]:
    """Microseconds per text for the tokenizer paths a one-text request could take."""
    ways: dict[str, Callable[[str], Any]] = {
        "tokenizer([t], padding=True, return_tensors=np) (now)": lambda t: tokenizer(
            [t], truncation=True, max_length=max_length, padding=True, return_tensors="np"
        ),
        "tokenizer(t, return_tensors=np), no padding": lambda t: tokenizer(
            t, truncation=True, max_length=max_length, return_tensors="np"
        ),
        "fast backend encode (tokenizers.Tokenizer)": lambda t: tokenizer.backend_tokenizer.encode(
            t
        ),
    }
    out = {}
    for name, fn in ways.items():
        lat = time_each(fn, texts, 20)
        out[name] = round(statistics.median(lat) * 1e6, 1)
    return out


def bench_targets(
    home: Path, run_id: str, texts: list[str], dev: list[tuple[str, str]], tmp: Path, args: Any
) -> dict[str, Any]:
    """Issue 14's table, in one run on one model and one set of texts, plus the levers."""
    import httpx
    from transformers import pipeline

    from loralab.serving.service import PredictionService
    from loralab.training.devices import cpu_supports_bf16
    from loralab.training.inference import load_predictor
    from loralab.training.runs import find_run

    run = find_run(home, run_id)
    cache = tmp / "onnx-cache"
    out: dict[str, Any] = {}

    # cold start first (nothing else of ours running): an empty ONNX cache, then a warm one
    print("\ncold start: process start -> first /predict answer ...", flush=True)
    out["cold_start_s"] = {
        "merged, onnx, empty cache (exports)": round(
            cold_start(home, run_id, texts[0], mode="merged", onnx_cache_dir=str(cache)), 2
        ),
        "merged, onnx, warm cache": round(
            cold_start(home, run_id, texts[0], mode="merged", onnx_cache_dir=str(cache)), 2
        ),
        "merged, pytorch": round(cold_start(home, run_id, texts[0], mode="merged", onnx=False), 2),
    }
    for name, s in out["cold_start_s"].items():
        print(f"  {name}: {s:.2f} s", flush=True)

    servers = {
        "onnx (uvicorn auto: uvloop + httptools)": Server(
            home, run_id, mode="merged", onnx_cache_dir=str(cache)
        ),
        "onnx (uvicorn asyncio + h11)": Server(
            home,
            run_id,
            mode="merged",
            onnx_cache_dir=str(cache),
            uvicorn={"loop": "asyncio", "http": "h11"},
        ),
        "pytorch fp32": Server(home, run_id, mode="merged", onnx=False, precision="fp32"),
    }
    try:
        for srv in servers.values():
            srv.wait_ready()
        contenders: dict[str, Callable[[str], Any]] = {}
        with contextlib.ExitStack() as stack:
            fp32 = load_predictor(run, device="cpu", precision="fp32")
            pipe = pipeline(
                "text-classification",
                model=fp32.model,
                tokenizer=fp32.tokenizer,
                device=torch.device("cpu"),
            )
            contenders["HF pipeline, merged fp32 (baseline)"] = pipe
            services: dict[str, Any] = {}
            precisions: dict[str, tuple[dict[str, Any], str]] = {
                "onnx": ({"onnx_cache_dir": cache}, "auto")
            }
            precisions["pytorch fp32"] = ({"onnx": False}, "fp32")
            if cpu_supports_bf16():
                precisions["pytorch bf16"] = ({"onnx": False}, "bf16")
            for name, (extra, prec) in precisions.items():
                service = PredictionService(
                    make_settings(home, mode="merged", precision=prec, **extra), model=run_id
                )
                service.load_default()
                stack.callback(service.close)
                services[name] = service
                backend = service.pool.backend(service.default.key)
                contenders[f"loralab in process, merged, {name} [{backend}]"] = service.predict_sync
            for name, srv in servers.items():
                client = stack.enter_context(httpx.Client(base_url=srv.url, timeout=30))

                def call(text: str, c: httpx.Client = client) -> float:
                    response = c.post("/predict", json={"text": text})
                    response.raise_for_status()
                    return float(response.json()["latency_ms"])

                contenders[f"HTTP /predict, 1 keep-alive client, {name}"] = call
            print(
                f"\ntargets: one text at a time, {len(texts)} SST-2 dev texts, contenders in "
                "turns of 25",
                flush=True,
            )
            out["latency"] = bench_latency(contenders, texts, min(20, len(texts)))
            for name, s in out["latency"].items():
                print(f"  {name}: {fmt(s)}", flush=True)
            out["pipeline_batch32_texts_per_s"] = round(pipeline_batch_rate(pipe, texts), 1)
            print(
                f"  HF pipeline, batch 32 in process: {out['pipeline_batch32_texts_per_s']:.0f} "
                "texts/s",
                flush=True,
            )
            onnx_service = services["onnx"]
            out["backend"] = onnx_service.pool.backend(onnx_service.default.key)
            out["agreement"] = agreement(onnx_service, dev)
            print(f"  agreement on {len(dev)} dev texts: {out['agreement']}", flush=True)
            if cpu_supports_bf16():
                out["agreement_bf16"] = agreement(services["pytorch bf16"], dev)
            answer = onnx_service.predict_sync(texts[0])
            out["serialization_us"] = serialization_lever(answer)
            out["tokenizer_us"] = tokenizer_lever(
                fp32.tokenizer, texts, onnx_service.default.max_length
            )
        print(f"\n{args.clients} concurrent clients against the ONNX server ...", flush=True)
        out["concurrent"] = bench_concurrent(
            {k: servers[k] for k in ("onnx (uvicorn auto: uvloop + httptools)", "pytorch fp32")},
            texts,
            args.requests,
            args.clients,
            args.rounds,
        )
    finally:
        for srv in servers.values():
            srv.stop()
    if not args.no_int8:
        print("\nlever: dynamic int8 ONNX ...", flush=True)
        out["int8"] = int8_lever(run, tmp, texts, dev)
    return out


def print_targets(t: dict[str, Any]) -> None:
    """Issue 14's table: each measure, its baseline from the same run, the ratio, the target."""
    lat = t["latency"]
    base = lat["HF pipeline, merged fp32 (baseline)"]["p50_ms"]
    onnx_name = next(k for k in lat if k.startswith("loralab in process, merged, onnx"))
    http_name = "HTTP /predict, 1 keep-alive client, onnx (uvicorn auto: uvloop + httptools)"
    conc = t["concurrent"]["onnx (uvicorn auto: uvloop + httptools)"]
    rate = t["pipeline_batch32_texts_per_s"]
    agree = t["agreement"]
    cold = t["cold_start_s"]["merged, onnx, warm cache"]
    rows = [
        (
            "in-process p50, one SST-2 sentence",
            f"{lat[onnx_name]['p50_ms']:.2f} ms",
            f"pipeline fp32 {base:.2f} ms",
            ratio(lat[onnx_name]["p50_ms"], base),
            f"<= {TARGET_VS_PIPELINE_INPROC:g}x",
            lat[onnx_name]["p50_ms"] / base <= TARGET_VS_PIPELINE_INPROC,
        ),
        (
            "HTTP /predict p50, one keep-alive client",
            f"{lat[http_name]['p50_ms']:.2f} ms",
            f"pipeline fp32 {base:.2f} ms",
            ratio(lat[http_name]["p50_ms"], base),
            f"<= {TARGET_VS_PIPELINE_HTTP:g}x",
            lat[http_name]["p50_ms"] / base <= TARGET_VS_PIPELINE_HTTP,
        ),
        (
            "HTTP req/s, 32 clients",
            f"{conc['requests_per_s']:.0f} req/s",
            f"pipeline batch-32 {rate:.0f} texts/s",
            ratio(conc["requests_per_s"], rate),
            f">= {TARGET_VS_PIPELINE_RPS:g}x",
            conc["requests_per_s"] / rate >= TARGET_VS_PIPELINE_RPS,
        ),
        (
            f"label agreement, fp32 PyTorch, {agree['texts']} dev",
            f"{agree['agreement'] * 100:.2f} %",
            f"max prob diff {agree['max_probability_diff']:.2g}",
            "-",
            f">= {TARGET_AGREEMENT * 100:g} %",
            agree["agreement"] >= TARGET_AGREEMENT,
        ),
        (
            "cold start (process start -> answer)",
            f"{cold:.2f} s",
            f"empty cache {t['cold_start_s']['merged, onnx, empty cache (exports)']:.2f} s",
            "-",
            f"<= {TARGET_COLD_START_S:g} s",
            cold <= TARGET_COLD_START_S,
        ),
    ]
    print(f"\n== issue 14 targets (hot model on: {t['backend']}), one run, same model and texts")
    head = ("measure", "loralab", "baseline (same run)", "ratio", "target", "met")
    table = [(*r[:5], "yes" if r[5] else "NO") for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *table]) for i in range(len(head))]
    for row in [head, *table]:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print("\n== levers (one text at a time, p50 ms; vs the pipeline fp32 baseline)")
    for name, s in lat.items():
        print(
            f"  {name}: p50 {s['p50_ms']:.2f} ms ({ratio(s['p50_ms'], base)}), "
            f"p99 {s['p99_ms']:.2f}"
        )
    for name, s in t["concurrent"].items():
        print(
            f"  32 clients, {name}: {s['requests_per_s']:.0f} req/s, mean batch {s['mean_batch']}"
        )
    for name, secs in t["cold_start_s"].items():
        print(f"  cold start, {name}: {secs:.2f} s")
    if "agreement_bf16" in t:
        b = t["agreement_bf16"]
        print(
            f"  bf16 PyTorch vs fp32: agreement {b['agreement'] * 100:.2f} %, "
            f"max diff {b['max_probability_diff']:.2g}"
        )
    for name, us in t["serialization_us"].items():
        print(f"  answer -> JSON, {name}: {us:.1f} us")
    for name, us in t["tokenizer_us"].items():
        print(f"  tokenize one text, {name}: {us:.1f} us")
    for name, s in t.get("int8", {}).items():
        print(
            f"  {name}: agreement {s['agreement'] * 100:.2f} %, p50 {s['p50_ms']:.2f} ms, "
            f"{s['size_mb']:.0f} MB"
        )
    t["met"] = {r[0]: bool(r[5]) for r in rows}


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Performance of the loralab prediction service vs the Hugging Face "
            "text-classification pipeline on the same merged model: in-process latency, HTTP "
            "latency, throughput of 32 concurrent HTTP clients with and without micro-batching, "
            "and memory of 1 vs 10 adapters. Trains a quick MiniLM LoRA model first unless "
            "--run-dir names a results home with a finished run. Texts: SST-2 dev.tsv from "
            "../shared/data/sst2 (not part of the project; Socher et al., 2013, via GLUE)."
        ),
        epilog="Writes bench/out/serve_bench.json. Numbers, not pass/fail: targets are printed "
        "beside the figures. Run on a quiet machine.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"folder with train.tsv and dev.tsv (sentence<TAB>label); default {DEFAULT_DATA}",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="an existing results home (results/<experiment>/<run_id>/...): serve its newest "
        "finished run instead of training one; its model cards are read from "
        "<run-dir>/../data/model_registry",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary results home (its path is printed) for a later --run-dir",
    )
    parser.add_argument("--train-rows", type=int, default=2000, help="rows of train.tsv (2000)")
    parser.add_argument("--train-steps", type=int, default=40, help="optimizer steps (40)")
    parser.add_argument(
        "--texts", type=int, default=400, help="dev.tsv rows timed one at a time (400)"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per concurrent run (2000)"
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="concurrent runs per setting; best kept (2)"
    )
    parser.add_argument(
        "--waits",
        default="1,2,5",
        help="micro_batch_wait_ms values to try with micro-batching (1,2,5)",
    )
    parser.add_argument("--adapters", type=int, default=10, help="adapters for memory (10)")
    parser.add_argument(
        "--no-merged-memory",
        action="store_true",
        help="skip the RSS of N merged models (contrast figure)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20 training steps, 100 texts, 400 requests x 1 round, waits 2 only, "
        "no merged-memory figure",
    )
    parser.add_argument(
        "--targets-only",
        action="store_true",
        help="only issue 14's side-by-side table and its levers (cold start, ONNX Runtime vs "
        "PyTorch fp32/bf16 vs the HF pipeline, HTTP, 32 clients, SST-2 dev agreement, int8); "
        "skips the micro-batching waits and memory sections",
    )
    parser.add_argument("--no-int8", action="store_true", help="skip the dynamic int8 ONNX lever")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.train_steps = min(args.train_steps, 20)
        args.train_rows = min(args.train_rows, 800)
        args.texts = min(args.texts, 100)
        args.requests = min(args.requests, 400)
        args.rounds = 1
        args.waits = "2"
        args.no_merged_memory = True
    try:
        args.wait_list = [float(w) for w in args.waits.split(",") if w.strip()]
    except ValueError:
        parser.error("--waits: comma-separated numbers of milliseconds")
    for name in ("texts", "requests", "clients", "rounds", "adapters", "train_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (args.data / "dev.tsv").is_file():
        parser.error(f"--data {args.data}: no dev.tsv there")
    if args.run_dir is None and not (args.data / "train.tsv").is_file():
        parser.error(f"--data {args.data}: no train.tsv there (or pass --run-dir)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    load_before = load_before_measuring()
    from loralab.training.devices import cpu_supports_bf16, select_device

    machine: dict[str, Any] = {
        "cpu": select_device("cpu", "fp32").description,
        "cpu_bf16": cpu_supports_bf16(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_before": [round(x, 2) for x in load_before],
    }
    machine["matmul_gflops_fp32"] = round(matmul_gflops(torch.float32))
    if machine["cpu_bf16"]:
        machine["matmul_gflops_bf16"] = round(matmul_gflops(torch.bfloat16))
    machine_line = (
        f"{machine['cpu']}; {machine['cores']} cores; torch {machine['torch']} on "
        f"{machine['torch_threads']} threads; python {machine['python']}; load before "
        f"{load_before[0]:.2f}; 2048² matmul {machine['matmul_gflops_fp32']} GFLOP/s fp32"
        + (f", {machine['matmul_gflops_bf16']} bf16" if machine["cpu_bf16"] else "")
        + " (quiet machine: ~200 / ~930)"
    )
    print(f"machine: {machine_line}", flush=True)
    texts = [t for t, _ in read_tsv(args.data / "dev.tsv", args.texts)]
    warmup = min(20, len(texts))

    tmp = Path(tempfile.mkdtemp(prefix="serve_bench-"))
    data: dict[str, Any] = {
        "benchmark": "serve_bench",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        # 1. the model
        if args.run_dir is not None:
            home = args.run_dir.resolve()
            run_id = newest_run(home)
            train_s = None
            print(f"model: run {run_id} from {home} (not trained here)", flush=True)
        else:
            home = tmp / "results"
            print(
                f"training a minilm-l6 LoRA adapter ({args.train_steps} steps on "
                f"{args.train_rows} SST-2 rows) into {home} ...",
                flush=True,
            )
            run_id, train_s = run_child(
                train_process, str(home), str(args.data), args.train_rows, args.train_steps
            )
            print(
                f"  trained run {run_id} in {train_s:.1f} s (train() wall clock, in a child "
                "process)",
                flush=True,
            )
        from transformers import AutoTokenizer

        from loralab.training.runs import find_run, read_state

        state = read_state(find_run(home, run_id))
        tok = AutoTokenizer.from_pretrained(str(find_run(home, run_id).tokenizer))
        mean_tokens = statistics.fmean(len(tok(t)["input_ids"]) for t in texts)

        precision = "fp32"  # of loralab's own servers; set by the sections below
        waits = list(dict.fromkeys([2.0, *args.wait_list]))
        if not args.targets_only:
            # servers (separate processes): started together, measured in interleaved turns
            waits = list(dict.fromkeys([2.0, *args.wait_list]))
            print("\nstarting servers (uvicorn in separate processes, as `loralab serve`) ...")
            specs: dict[str, dict[str, Any]] = {
                "adapters": {"mode": "adapters"},
                "merged": {"mode": "merged"},
                "no batching (micro_batch_size=1)": {"micro_batch_size": 1},
            }
            for wait in waits:
                label = " (default)" if wait == 2.0 else ""
                specs[f"micro-batching, wait {wait:g} ms{label}"] = (
                    {"micro_batch_wait_ms": wait} if wait != 2.0 else {}
                )
            if not args.quick:  # does torch on every core starve the event loop? (serving.threads)
                specs["no batching, serving.threads=1"] = {"micro_batch_size": 1, "threads": 1}
                specs["micro-batching, wait 2 ms, serving.threads=1"] = {"threads": 1}
            servers: dict[str, Server] = {}
            try:
                for name, serving in specs.items():
                    if serving == {} and "adapters" in servers:
                        servers[name] = servers["adapters"]  # the defaults: one server
                        continue
                    servers[name] = Server(home, run_id, **serving)
                for srv in dict.fromkeys(servers.values()):
                    srv.wait_ready()
                data["server_rss_mb"] = {
                    name: round(rss_mb(servers[name].pid), 1) for name in ("adapters", "merged")
                }

                # 2./3. one text at a time
                print(
                    f"\none text at a time: {len(texts)} SST-2 dev texts (mean {mean_tokens:.1f} "
                    f"tokens), after {warmup} warm-up texts; contenders take turns in blocks of 25",
                    flush=True,
                )
                with contextlib.ExitStack() as stack:
                    contenders, precision = latency_contenders(
                        home,
                        run_id,
                        {m: servers[m].url for m in ("adapters", "merged")},
                        stack,
                    )
                    latency = bench_latency(contenders, texts, warmup)
                for name, s in latency.items():
                    print(f"  {name}: {fmt(s)}", flush=True)
                data["in_process"] = {k: v for k, v in latency.items() if "HTTP" not in k}
                data["http_single"] = {k: v for k, v in latency.items() if "HTTP" in k}
                gc.collect()

                # 4. concurrent clients
                print(
                    f"\n{args.clients} concurrent clients, {args.requests} requests per round, "
                    f"{args.rounds} round(s)",
                    flush=True,
                )
                load_servers = {
                    name: servers[name] for name in specs if name not in ("adapters", "merged")
                }
                conc = bench_concurrent(
                    load_servers, texts, args.requests, args.clients, args.rounds
                )
            finally:
                for srv in dict.fromkeys(servers.values()):
                    srv.stop()
            base_rps = conc["no batching (micro_batch_size=1)"]["requests_per_s"]
            batched = {
                k: v
                for k, v in conc.items()
                if k.startswith("micro-batching") and "threads" not in k
            }
            best_name = max(batched, key=lambda k: batched[k]["requests_per_s"])
            default_name = "micro-batching, wait 2 ms (default)"
            data["http_concurrent"] = conc
            data["batching"] = {
                "best": best_name,
                "best_wait_ms": float(best_name.split("wait ")[1].split(" ms")[0]),
                "waits_requests_per_s": {k: v["requests_per_s"] for k, v in batched.items()},
                "best_ratio": round(batched[best_name]["requests_per_s"] / base_rps, 2),
                "default_ratio": round(conc[default_name]["requests_per_s"] / base_rps, 2),
            }

            # 5. memory
            print(f"\nmemory: fresh processes with 1 and {args.adapters} adapters ...", flush=True)
            copies = make_adapter_copies(home, run_id, args.adapters, tmp / "copies")
            memory = {"adapters": measure_memory("adapters", copies)}
            print(
                f"  {args.adapters} adapters: "
                f"+{memory['adapters']['added_by_rest_mb']:.1f} MB over 1",
                flush=True,
            )
            if not args.no_merged_memory:
                memory["merged"] = measure_memory("merged", copies)
                print(
                    f"  {args.adapters} merged models: "
                    f"+{memory['merged']['added_by_rest_mb']:.1f} MB over 1",
                    flush=True,
                )
            data["memory"] = memory
        # 6. issue 14: the targets, side by side
        dev = read_tsv(args.data / "dev.tsv")
        data["targets_issue14"] = bench_targets(home, run_id, texts, dev, tmp, args)
    finally:
        if args.keep:
            print(f"\nkept the temporary results home: {tmp / 'results'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    data["settings"] = {
        "base_model": "minilm-l6",
        "run_id": run_id,
        "run_dir": str(args.run_dir) if args.run_dir else None,
        "train_seconds": round(train_s, 1) if train_s is not None else None,
        "run_accuracy": state.get("accuracy"),
        "precision": precision,
        "texts": len(texts),
        "mean_tokens": round(mean_tokens, 1),
        "warmup": warmup,
        "requests": args.requests,
        "clients": args.clients,
        "rounds": args.rounds,
        "waits_ms": waits,
        "adapters": args.adapters,
        "quick": args.quick,
        "data": str(args.data.resolve()),
        "dataset": "SST-2 (Socher et al., 2013, via GLUE), dev.tsv",
    }
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    data["machine"] = machine
    if not args.targets_only:
        lat = data["in_process"]
        data["targets"] = {
            "in_process_p50_ms_lt": TARGET_INPROC_P50_MS,
            "http_p50_ms_lt": TARGET_HTTP_P50_MS,
            "batching_ratio_ge": TARGET_BATCHING_RATIO,
            "ten_adapters_add_mb_lt": TARGET_TEN_ADAPTERS_MB,
            "met": {
                "in_process_adapters": lat["loralab predict_sync (adapters)"]["p50_ms"]
                < TARGET_INPROC_P50_MS,
                "in_process_merged": lat["loralab predict_sync (merged)"]["p50_ms"]
                < TARGET_INPROC_P50_MS,
                "http_adapters": data["http_single"]["HTTP /predict, 1 client (adapters)"]["p50_ms"]
                < TARGET_HTTP_P50_MS,
                "batching_default": data["batching"]["default_ratio"] >= TARGET_BATCHING_RATIO,
                "batching_best": data["batching"]["best_ratio"] >= TARGET_BATCHING_RATIO,
                "ten_adapters": data["memory"]["adapters"]["added_by_rest_mb"]
                < TARGET_TEN_ADAPTERS_MB,
            },
        }

    print(f"\n{'=' * 100}\nprediction service benchmark — model {run_id} ({precision})")
    if train_s is not None:
        print(f"model trained here in {train_s:.1f} s; run accuracy {state.get('accuracy')}")
    if not args.targets_only:
        print_table(data)
    print_targets(data["targets_issue14"])
    print(f"\nmachine: {machine_line}; load after {machine['load_average_after'][0]:.2f}")
    if not args.targets_only:
        print(
            "targets met: "
            + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in data["targets"]["met"].items())
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
