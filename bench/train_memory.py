"""Peak memory of training: short texts (SST-2) and long, news-length texts, one process each.

Each case trains the default recipe (minilm-l6, LoRA r=8, batch 32, max_length 128, one epoch
or --steps steps) in a fresh Python process and reports its peak resident set size twice (the
kernel's ru_maxrss and a 50 ms psutil sampler), the RSS before training starts, and the phase
in which the peak was reached (loading, training, evaluation, saving). The project promises
training under 2.5 GB on these machines.

The long-text case writes a deterministic 4-class dataset of 6,000 news-length texts (120-400
words drawn from SST-2's vocabulary, string labels) into bench/out/; its labels are arbitrary,
so its accuracy means nothing: it measures memory. The short case uses SST-2 from
../shared/data/sst2 (beside the repository, not part of the project; Socher et al., 2013, via
GLUE); pass another folder with --data.

    .venv/bin/python bench/train_memory.py                 # both cases, 1 epoch of long texts
    .venv/bin/python bench/train_memory.py --steps 40      # quick
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "bench" / "out"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sst2"
LABELS = ["world", "sports", "business", "sci/tech"]
PROMISE_MB = 2500.0


def write_long_texts(vocabulary_source: Path, path: Path, rows: int = 6000) -> Path:
    """6,000 texts of 120-400 words (news length), four string labels, reproducible."""
    if path.is_file():
        return path
    words = sorted(
        {w for w in vocabulary_source.read_text(encoding="utf-8").split() if w.isalpha()}
    )
    rng = random.Random(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            writer.writerow([" ".join(rng.choices(words, k=rng.randint(120, 400))), LABELS[i % 4]])
    tmp.replace(path)
    return path


def measure(config_values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Runs in the child process: train once, sampling RSS and noting the phase of the peak."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psutil
    import transformers

    from loralab.training import build_config, run_training

    transformers.logging.set_verbosity_error()
    process = psutil.Process()
    state = {"peak": 0, "phase": "loading", "peak_phase": "loading", "before_training": 0}

    def sample() -> None:
        while True:
            rss = process.memory_info().rss
            if rss > state["peak"]:
                state["peak"], state["peak_phase"] = rss, state["phase"]
            time.sleep(0.05)

    class Phases:
        def start(self, total_steps: int) -> None:
            state["before_training"] = process.memory_info().rss
            state["phase"] = "training"

        def advance(self, step: int, values: dict[str, float]) -> None:
            state["phase"] = "training"

        def note(self, message: str) -> None:
            state["phase"] = "evaluation" if message.startswith("eval") else message[:40]

        def finish(self) -> None:
            state["phase"] = "saving"

    threading.Thread(target=sample, daemon=True).start()
    config = build_config(config_values, overrides)
    started = time.perf_counter()
    result = run_training(config, OUT / "runs", progress=Phases())
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "peak_rss_mb": round(max(maxrss, state["peak"]) / 1e6, 1),
        "ru_maxrss_mb": round(maxrss / 1e6, 1),
        "sampled_peak_mb": round(state["peak"] / 1e6, 1),
        "peak_phase": state["peak_phase"],
        "rss_before_training_mb": round(state["before_training"] / 1e6, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "samples_per_second": round(result.samples_per_second, 1),
        "device": result.device,
    }


def run_case(name: str, values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    print(f"== {name}", flush=True)
    child = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([values, overrides])],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"{name} failed:\n{child.stderr[-3000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"   peak {figures['peak_rss_mb']:.0f} MB in {figures['peak_phase']} (before training "
        f"{figures['rss_before_training_mb']:.0f} MB), {figures['samples_per_second']} samples/s",
        flush=True,
    )
    return {"case": name, "config": values, "overrides": overrides, **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="max_steps per case (quick)")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with SST-2 train.tsv and dev.tsv"
    )
    parser.add_argument("--out", type=Path, default=OUT / "train_memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        values, overrides = json.loads(args.child)
        print(json.dumps(measure(values, overrides)))
        return 0
    steps = [f"max_steps={args.steps}", f"eval_steps={args.steps}"] if args.steps else []
    long_texts = write_long_texts(args.data / "train.tsv", OUT / "long_texts_6000.csv")
    cases = [
        (
            "short texts: SST-2 (mean 13 tokens)",
            {
                "experiment": "memory-short",
                "train_file": str(args.data / "train.tsv"),
                "validation_file": str(args.data / "dev.tsv"),
                "text_column": "sentence",
                "max_steps": 1500,
                "batch_size": 32,
                "max_length": 64,
            },
        ),
        (
            "long texts: 6,000 news-length, 4 string labels",
            {
                "experiment": "memory-long",
                "train_file": str(long_texts),
                "epochs": 1,
                "batch_size": 32,
            },
        ),
    ]
    results = [run_case(name, values, steps) for name, values in cases]
    print()
    for r in results:
        verdict = "under" if r["peak_rss_mb"] < PROMISE_MB else "OVER"
        print(f"{r['case']:<48} peak {r['peak_rss_mb']:>6.0f} MB ({verdict} {PROMISE_MB:.0f} MB)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": results}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
