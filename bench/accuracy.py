"""Accuracy, training time and memory of the SST-2 recipe (configs/sst2.yaml).

Trains the recipe with loralab.training.run_training (NullLogger: no MLflow, so the figures are
the library's own) and reports accuracy and macro F1 on dev.tsv, training time, samples/s and
the process's peak resident memory, measured twice: getrusage's ru_maxrss, and the largest RSS
seen by a psutil sampler thread.

Uses SST-2 from ../shared/data/sst2 (beside the repository; not part of the project):
Socher et al., 2013, via GLUE (Wang et al., 2018). Pass another folder with --data.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/accuracy.py                         # full run
    HF_HUB_OFFLINE=1 .venv/bin/python bench/accuracy.py max_steps=30 eval_steps=30  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from loralab.training import (  # noqa: E402
    ConfigError,
    TrainConfig,
    build_config,
    load_config,
    run_training,
)
from loralab.training.devices import cpu_supports_bf16  # noqa: E402
from machine import load_before_measuring

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "sst2.yaml"
DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "accuracy.json"
DEFAULT_RESULTS = REPO_ROOT / "bench" / "out" / "runs"
MB = 1_000_000  # decimal megabytes

TARGET_ACCURACY = 0.88
TARGET_TRAIN_SECONDS = 600.0
TARGET_PEAK_RSS_MB = 2500.0


class RssSampler:
    """Samples this process's resident set size in a background thread; keeps the maximum."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


class PrintProgress:
    """A ProgressReporter that prints a line every ``every`` steps and each evaluation."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.total = 0
        self.started = time.perf_counter()

    def start(self, total_steps: int) -> None:
        self.total = total_steps
        self.started = time.perf_counter()
        print(f"training: {total_steps} steps", flush=True)

    def advance(self, step: int, values: dict[str, float]) -> None:
        if step and step % self.every == 0:
            loss = values.get("loss", float("nan"))
            print(
                f"  step {step}/{self.total}  last logged loss {loss:.4f}  "
                f"{time.perf_counter() - self.started:.0f} s",
                flush=True,
            )

    def note(self, message: str) -> None:
        print(f"  {message}", flush=True)

    def finish(self) -> None:
        pass


def peak_rss_getrusage() -> int:
    """ru_maxrss in bytes (Linux reports KiB, macOS bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Train configs/sst2.yaml with loralab and report dev accuracy, macro F1, training "
            "time, samples/s and peak RSS. Uses the shared SST-2 data in ../shared/data/sst2 "
            "(beside the repository, not part of the project; Socher et al., 2013, via GLUE); "
            "pass another folder holding train.tsv and dev.tsv with --data."
        ),
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="TrainConfig overrides, e.g. max_steps=30 eval_steps=30",
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="recipe (default configs/sst2.yaml)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with train.tsv and dev.tsv; replaces the recipe's "
        "train_file and validation_file (default: the recipe's, which point at "
        "../shared/data/sst2)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help="where the run folder goes (default bench/out/runs)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="JSON output (default bench/out/accuracy.json)",
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.1,
        help="seconds between RSS samples (default 0.1)",
    )
    parser.add_argument(
        "--print-every", type=int, default=100, help="print progress every N steps (default 100)"
    )
    args = parser.parse_args(argv)
    if args.data is not None:
        for name in ("train.tsv", "dev.tsv"):
            if not (args.data / name).is_file():
                parser.error(f"{args.data / name} not found (--data names a folder with {name})")
    if args.sample_interval <= 0 or args.print_every < 1:
        parser.error("--sample-interval must be positive and --print-every at least 1")
    try:
        args.train_config = build_recipe(args.config, args.data, args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    return args


def _from_repo_root(path: str | None) -> str | None:
    """Recipes name data relative to the repository root (where `loralab train` runs)."""
    if path is None or Path(path).is_absolute():
        return path
    return str(REPO_ROOT / path)


def build_recipe(config_path: Path, data: Path | None, overrides: list[str]) -> TrainConfig:
    """The recipe, with --data substituted first and key=value overrides applied last."""
    values = load_config(config_path).to_dict()
    if data is not None:
        values["train_file"] = str(data.resolve() / "train.tsv")
        values["validation_file"] = str(data.resolve() / "dev.tsv")
    values["train_file"] = _from_repo_root(values["train_file"])
    values["validation_file"] = _from_repo_root(values.get("validation_file"))
    config = build_config(values, overrides)
    if config.validation_file is None:
        print(
            "note: no validation_file: accuracy is measured on a split of train_file, "
            "not on dev.tsv"
        )
    return config


def quiet_transformers() -> None:
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    config: TrainConfig = args.train_config
    cores = os.cpu_count() or 1
    load = load_before_measuring()
    print(
        f"recipe {args.config}: {config.base_model} on {config.train_file}, validated on "
        f"{config.validation_file}; {cores} cores, {torch.get_num_threads()} torch threads"
    )

    with RssSampler(args.sample_interval) as sampler:
        started = time.perf_counter()
        result = run_training(config, args.results_dir, progress=PrintProgress(args.print_every))
        wall = time.perf_counter() - started
    rusage_mb = peak_rss_getrusage() / MB
    sampled_mb = sampler.peak / MB
    peak_mb = max(rusage_mb, sampled_mb)
    # The headline is the LAST evaluation: the run keeps its best checkpoint, but choosing it by
    # dev accuracy selects on the held-out set and flatters the score.
    final = result.history[-1] if result.history else result.report
    accuracy = float(final["accuracy"])
    macro_f1 = float(final["macro_f1"])
    best_on_dev = float(result.report["accuracy"])
    metrics = json.loads(result.run.metrics.read_text(encoding="utf-8"))

    targets: dict[str, dict[str, Any]] = {
        "accuracy": {
            "target": TARGET_ACCURACY,
            "value": accuracy,
            "met": accuracy >= TARGET_ACCURACY,
        },
        "train_seconds": {
            "target": TARGET_TRAIN_SECONDS,
            "value": result.train_seconds,
            "met": result.train_seconds <= TARGET_TRAIN_SECONDS,
        },
        "peak_rss_mb": {
            "target": TARGET_PEAK_RSS_MB,
            "value": peak_mb,
            "met": peak_mb < TARGET_PEAK_RSS_MB,
        },
    }
    print()
    print(
        f"dev accuracy     {accuracy:.4f} at the last step   (target >= {TARGET_ACCURACY}: "
        f"{verdict(targets['accuracy']['met'])})"
    )
    print(f"dev macro F1     {macro_f1:.4f}")
    print(
        f"best evaluation  {best_on_dev:.4f} at step {result.best_step} (chosen on dev itself: "
        "optimistic, not the headline)"
    )
    print(
        f"training time    {result.train_seconds:.1f} s, evaluation excluded "
        f"(target <= {TARGET_TRAIN_SECONDS:.0f} s on 2 cores: "
        f"{verdict(targets['train_seconds']['met'])}; this machine has {cores} cores)"
    )
    print(f"whole run        {wall:.1f} s (load, tokenize, train, evaluate, save)")
    print(f"samples/s        {result.samples_per_second:.1f}")
    print(
        f"steps            {metrics['train']['steps']} ({metrics['train']['epochs']} epochs), "
        f"best step {result.best_step}"
    )
    print(
        f"peak RSS         {rusage_mb:.0f} MB (ru_maxrss), {sampled_mb:.0f} MB (psutil, "
        f"{sampler.samples} samples)  (target < {TARGET_PEAK_RSS_MB:.0f} MB: "
        f"{verdict(targets['peak_rss_mb']['met'])})"
    )
    print(f"device           {result.device}")
    print(f"run folder       {result.run.root}")

    data: dict[str, Any] = {
        "benchmark": "accuracy",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": "SST-2 (Socher et al., 2013, via GLUE)",
        "recipe": str(args.config),
        "overrides": args.overrides,
        "config": config.to_dict(),
        "accuracy": round(accuracy, 4),
        "macro_f1": round(macro_f1, 4),
        "best_accuracy_selected_on_dev": round(best_on_dev, 4),
        "train_seconds": round(result.train_seconds, 2),
        "run_training_wall_seconds": round(wall, 2),
        "samples_per_second": round(result.samples_per_second, 1),
        "steps": metrics["train"]["steps"],
        "epochs": metrics["train"]["epochs"],
        "best_step": result.best_step,
        "history": result.history,
        "peak_rss_mb": {
            "ru_maxrss": round(rusage_mb, 1),
            "psutil_sampled": round(sampled_mb, 1),
            "unit": "MB = 1,000,000 bytes",
        },
        "device": result.device,
        "machine": {
            "cores": cores,
            "torch_threads": torch.get_num_threads(),
            "cpu_bf16": cpu_supports_bf16(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "run_folder": str(result.run.root),
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
