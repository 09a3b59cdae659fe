"""Accuracy against minutes of training for several SST-2 recipes, in one run.

Each variant is configs/sst2.yaml plus key=value overrides. For every evaluation the benchmark
records the dev accuracy and the training seconds spent so far (evaluation excluded), then writes
bench/out/recipe_curves.json and a plot, bench/out/recipe_curves.png, with one curve per variant
and the 10-minute budget marked.

The headline of a variant is its accuracy at the LAST evaluation within the budget: picking the
best evaluation would select on the dev set, which flatters it.

Uses SST-2 from ../shared/data/sst2 (beside the repository; not part of the project):
Socher et al., 2013, via GLUE (Wang et al., 2018). Pass another folder with --data.

    .venv/bin/python bench/recipe_curves.py                       # the default variants
    .venv/bin/python bench/recipe_curves.py --variant 'long:max_steps=5000' \\
        --variant 'all-linear:max_steps=4000 lora_target_modules=[query,key,value]'
    .venv/bin/python bench/recipe_curves.py --plot-only           # re-plot the saved JSON
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from accuracy import DEFAULT_CONFIG, RssSampler, build_recipe, quiet_transformers  # noqa: E402
from loralab.training import run_training  # noqa: E402
from loralab.training.devices import cpu_supports_bf16  # noqa: E402
from machine import load_before_measuring  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "recipe_curves.json"
BUDGET_MINUTES = 10.0

# name: overrides of configs/sst2.yaml (the recipe as committed is "recipe")
DEFAULT_VARIANTS = {
    "old (r8 q,v; 1500 steps)": "max_steps=1500 lora_target_modules=[query,value]",
    "recipe": "",
}


class TimedProgress:
    """A ProgressReporter that remembers the training seconds at every step."""

    def __init__(self, every: int = 100) -> None:
        self.every = every
        self.started = time.perf_counter()
        self.seconds_at: dict[int, float] = {}
        self.total = 0

    def start(self, total_steps: int) -> None:
        self.total = total_steps
        self.started = time.perf_counter()

    def advance(self, step: int, values: dict[str, float]) -> None:
        self.seconds_at[step] = time.perf_counter() - self.started
        if step % self.every == 0:
            print(f"    step {step}/{self.total}  {self.seconds_at[step]:.0f} s", flush=True)

    def note(self, message: str) -> None:
        print(f"    {message}", flush=True)

    def finish(self) -> None:
        pass


def parse_variant(text: str) -> tuple[str, str]:
    name, sep, overrides = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME:key=value key=value")
    return name.strip(), overrides.strip()


def run_variant(name: str, overrides: str, args: argparse.Namespace) -> dict[str, Any]:
    config = build_recipe(args.config, args.data, overrides.split() + args.common)
    print(f"== {name}: {overrides or '(the recipe as committed)'}", flush=True)
    progress = TimedProgress()
    with RssSampler(0.2) as sampler:
        result = run_training(config, args.results_dir, progress=progress)
    curve = []
    for entry in result.history:
        step = int(entry["step"])
        seconds = progress.seconds_at.get(step, float("nan"))
        curve.append(
            {
                "step": step,
                "accuracy": round(float(entry["accuracy"]), 4),
                "wall_seconds": round(seconds, 1),
            }
        )
    # train_seconds excludes evaluation: spread it evenly over the steps
    train_seconds = result.train_seconds
    steps = max(progress.seconds_at) if progress.seconds_at else 0
    seconds_per_step = train_seconds / steps if steps else float("nan")
    for point in curve:
        point["train_minutes"] = round(point["step"] * seconds_per_step / 60, 2)
    within = [p for p in curve if p["train_minutes"] <= BUDGET_MINUTES]
    headline = within[-1] if within else None
    return {
        "name": name,
        "overrides": overrides,
        "config": config.to_dict(),
        "curve": curve,
        "final_accuracy": curve[-1]["accuracy"] if curve else None,
        "accuracy_within_budget": headline["accuracy"] if headline else None,
        "best_accuracy_selected_on_dev": max((p["accuracy"] for p in curve), default=None),
        "train_seconds": round(train_seconds, 1),
        "samples_per_second": round(result.samples_per_second, 1),
        "peak_rss_mb": round(sampler.peak / 1e6, 1),
        "device": result.device,
    }


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for variant in data["variants"]:
        xs = [p["train_minutes"] for p in variant["curve"]]
        ys = [p["accuracy"] for p in variant["curve"]]
        ax.plot(xs, ys, marker="o", label=f"{variant['name']} ({variant['samples_per_second']}/s)")
    ax.axvline(BUDGET_MINUTES, color="grey", linestyle="--", label="10-minute budget")
    ax.axhline(0.88, color="green", linestyle=":", label="target 0.88")
    ax.set_xlabel("training minutes (evaluation excluded)")
    ax.set_ylabel("accuracy on SST-2 dev.tsv (1,000 held-out sentences)")
    ax.set_title(f"SST-2 recipes on {data['machine']['description']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge_outputs(paths: list[Path]) -> dict[str, Any]:
    """The first output with every output's variants; the machine line says they ran side by
    side (each process's own load readings are kept per variant)."""
    outputs = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    merged = dict(outputs[0])
    merged["variants"] = []
    for output in outputs:
        for variant in output["variants"]:
            merged["variants"].append({**variant, "machine": output["machine"]})
    threads = {v["config"].get("num_threads") for v in merged["variants"]}
    merged["machine"] = {
        "description": f"{os.cpu_count()} cores, runs side by side"
        + (f", {threads.pop()} thread(s) each" if len(threads) == 1 else "")
    }
    return merged


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train SST-2 recipe variants and plot dev accuracy against training minutes."
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        default=None,
        metavar="NAME:OVERRIDES",
        help="a variant: a name, a colon, then key=value overrides of the recipe (repeatable; "
        "default: the old recipe and the committed one)",
    )
    parser.add_argument(
        "--common",
        nargs="*",
        default=[],
        metavar="key=value",
        help="overrides applied to every variant (e.g. eval_steps=500)",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the base recipe")
    parser.add_argument(
        "--data", type=Path, default=None, help="folder with train.tsv and dev.tsv (SST-2)"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=REPO_ROOT / "bench" / "out" / "runs", help="run folders"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output")
    parser.add_argument("--plot-only", action="store_true", help="only re-draw the plot from --out")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="write the variants of these outputs (e.g. of one process per variant, run side by "
        "side) into --out as one, then plot them together",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    png = args.out.with_suffix(".png")
    if args.merge:
        try:
            merged = merge_outputs(args.merge)
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"--merge: not outputs of this benchmark ({err!r})", file=sys.stderr)
            return 2
        args.out.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
        plot(merged, png)
        print(f"wrote {args.out} and {png}")
        return 0
    if args.plot_only:
        plot(json.loads(args.out.read_text(encoding="utf-8")), png)
        print(f"wrote {png}")
        return 0
    quiet_transformers()
    variants = args.variant or list(DEFAULT_VARIANTS.items())
    load = load_before_measuring()
    cpu = "bf16" if cpu_supports_bf16() else "no bf16"
    data: dict[str, Any] = {
        "benchmark": "recipe_curves",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": "SST-2 (Socher et al., 2013, via GLUE); dev.tsv = 1,000 held-out sentences",
        "budget_minutes": BUDGET_MINUTES,
        "machine": {
            "description": f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, {cpu}",
            "load_average_before": [round(x, 2) for x in load],
        },
        "variants": [],
    }
    for name, overrides in variants:
        data["variants"].append(run_variant(name, overrides, args))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        plot(data, png)
    data["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print()
    print(f"{'variant':<34} {'acc@≤10min':>10} {'final':>7} {'minutes':>8} {'samples/s':>10}")
    for v in data["variants"]:
        print(
            f"{v['name']:<34} {v['accuracy_within_budget'] or float('nan'):>10.4f} "
            f"{v['final_accuracy']:>7.4f} {v['train_seconds'] / 60:>8.1f} "
            f"{v['samples_per_second']:>10.1f}"
        )
    print(f"\nwrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
