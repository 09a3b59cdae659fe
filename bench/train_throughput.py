"""Training throughput (samples/s) of three LoRA training loops on SST-2, in one process.

Contenders, all on the same base model, LoRA settings, rows, batch size, optimizer steps and
precision (fp32), on the CPU:

  pad-to-128         the common recipe: every text padded to 128 tokens, random batches,
                     a plain PyTorch loop.
  hand-written loop  a minimal PEFT loop: dynamic padding (DataCollatorWithPadding),
                     length-grouped batches, AdamW, gradient clipping at 1.0, no evaluation.
  loralab            loralab.training.run_training with a NullLogger, evaluating once at the end.

Every contender runs ``--warmup + --steps`` optimizer steps; the first ``--warmup`` are not
timed. For loralab the headline figure is the library's own ``TrainResult.samples_per_second``
(over all its steps, evaluation time excluded); the script also reports loralab's steady-state
rate over the same timed window as the others (from per-step timestamps taken through the
ProgressReporter interface) and the wall clock of the whole run_training call.

Uses SST-2 from ../shared/data/sst2 (beside the repository; not part of the project):
Socher et al., 2013, via GLUE (Wang et al., 2018). Pass another folder with --data.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py            # full run
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py --steps 20 --rows 2000  # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import DataCollatorWithPadding, set_seed  # noqa: E402

from loralab.training import TrainConfig, run_training  # noqa: E402
from loralab.training.catalog import ResolvedModel, resolve_model  # noqa: E402
from loralab.training.data import LabelledTexts, read_labelled_texts  # noqa: E402
from loralab.training.devices import cpu_supports_bf16, select_device  # noqa: E402
from loralab.training.model import build_lora_model, load_tokenizer  # noqa: E402
from machine import load_before_measuring

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sst2"
DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "train_throughput.json"

LABELS = ["0", "1"]
LORA_R, LORA_ALPHA, LORA_DROPOUT = 8, 16, 0.1
TARGET_MODULES = ("query", "value")
LEARNING_RATE = 1e-3
PAD_LENGTH = 128
MEGA_BATCH_MULT = 50
SEED = 42

CONTENDERS = ("pad-to-128", "hand-written", "loralab")
TARGET_VS_HAND = 0.95
TARGET_VS_PAD = 10.0


@dataclass
class Measurement:
    contender: str
    samples_per_second: float
    timed_steps: int
    timed_seconds: float
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Training throughput (samples/s) on SST-2 of three LoRA loops in one run: "
            "pad-to-128, a hand-written dynamic-padding loop, and loralab.run_training. "
            "Uses the shared SST-2 data in ../shared/data/sst2 (beside the repository, not part "
            "of the project; Socher et al., 2013, via GLUE); pass another folder holding "
            "train.tsv and dev.tsv with --data."
        ),
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"folder with train.tsv and dev.tsv (sentence<TAB>label); default {DEFAULT_DATA}",
    )
    parser.add_argument(
        "--base-model",
        default="minilm-l6",
        help="loralab catalog name, hub id or local directory (default minilm-l6)",
    )
    parser.add_argument(
        "--steps", type=int, default=150, help="timed optimizer steps (default 150)"
    )
    parser.add_argument(
        "--pad-steps",
        type=int,
        default=20,
        help="timed steps of pad-to-128; every one of its batches is 128 tokens "
        "wide, so few steps measure it as well as many (default 20)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed optimizer steps run first by every contender (default 5)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=4960,
        help="train on the first N rows of train.tsv "
        "(default 4960: warm-up + timed steps are exactly one epoch)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument(
        "--eval-rows",
        type=int,
        default=256,
        help="rows of dev.tsv for loralab's one evaluation at the end (default 256;"
        " evaluation time is not counted)",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset to run, for quick checks (default: all of "
        f"{', '.join(CONTENDERS)})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    args = parser.parse_args(argv)
    for name in ("steps", "rows", "batch_size", "eval_rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(args.contenders) - set(CONTENDERS))
    if unknown or not args.contenders:
        parser.error(f"--contenders: unknown {unknown}; choose from {', '.join(CONTENDERS)}")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    for name in ("train.tsv", "dev.tsv"):
        if not (args.data / name).is_file():
            parser.error(f"{args.data / name} not found (--data names a folder with {name})")
    return args


# -- data ------------------------------------------------------------------------------------


def load_subset(data_dir: Path, rows: int, eval_rows: int) -> tuple[LabelledTexts, LabelledTexts]:
    """The first ``rows`` training rows and ``eval_rows`` dev rows, read as loralab reads them."""
    train = read_labelled_texts(data_dir / "train.tsv", "sentence", "label")
    dev = read_labelled_texts(data_dir / "dev.tsv", "sentence", "label")
    if len(train) < rows:
        print(f"note: {data_dir / 'train.tsv'} has {len(train)} rows; using all of them")
    train = LabelledTexts(train.texts[:rows], train.labels[:rows], train.source)
    dev = LabelledTexts(dev.texts[:eval_rows], dev.labels[:eval_rows], dev.source)
    return train, dev


def write_tsv(data: LabelledTexts, path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\n")
        for text, label in zip(data.texts, data.labels, strict=True):
            handle.write(f"{text}\t{label}\n")


def label_ids(data: LabelledTexts) -> list[int]:
    index = {name: i for i, name in enumerate(LABELS)}
    return [index[x] for x in data.labels]


def fresh_model(base: ResolvedModel) -> Any:
    """Base + LoRA exactly as loralab builds it (classifier and pooler via modules_to_save)."""
    set_seed(SEED)
    model = build_lora_model(base, LABELS, LORA_R, LORA_ALPHA, LORA_DROPOUT, TARGET_MODULES)
    model.train()
    return model


# -- the timed loop shared by the two hand-made contenders -------------------------------------


def timed_loop(
    model: Any,
    batches: Iterator[dict[str, torch.Tensor]],
    warmup: int,
    steps: int,
    clip: float | None,
) -> tuple[float, int, float]:
    """Run warmup + steps optimizer steps; (seconds, samples, mean padded length) of the timed."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE)
    samples = tokens = 0
    start = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            samples = tokens = 0
            start = time.perf_counter()
        batch = next(batches)
        loss = model(**batch).loss
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        samples += int(batch["labels"].shape[0])
        tokens += int(batch["input_ids"].numel())
    return time.perf_counter() - start, samples, tokens / max(1, samples)


def forever(make_epoch: Callable[[int], list[list[int]]]) -> Iterator[list[int]]:
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


# -- contender a: pad to 128, random batches -------------------------------------------------


def bench_pad_to_128(
    base: ResolvedModel, train: LabelledTexts, args: argparse.Namespace
) -> Measurement:
    tokenizer = load_tokenizer(base)
    encoded = tokenizer(
        train.texts,
        padding="max_length",
        truncation=True,
        max_length=PAD_LENGTH,
        return_tensors="pt",
    )
    labels = torch.tensor(label_ids(train))
    generator = torch.Generator().manual_seed(SEED)

    def epoch(_: int) -> list[list[int]]:
        order = torch.randperm(len(labels), generator=generator).tolist()
        return [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for idx in forever(epoch):
            yield {**{k: v[idx] for k, v in encoded.items()}, "labels": labels[idx]}

    model = fresh_model(base)
    seconds, samples, width = timed_loop(model, batches(), args.warmup, args.pad_steps, clip=None)
    return Measurement(
        "pad-to-128",
        samples / seconds,
        args.pad_steps,
        seconds,
        "padding=max_length (128), random batches, plain AdamW loop",
        {"mean_padded_length": round(width, 2)},
    )


# -- contender b: hand-written loop, dynamic padding, length-grouped batches ----------------


def length_grouped_batches(
    lengths: list[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, cut into mega-batches of 50 batches, sort each by length, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = MEGA_BATCH_MULT * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lengths.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def bench_hand_written(
    base: ResolvedModel, train: LabelledTexts, args: argparse.Namespace
) -> Measurement:
    tokenizer = load_tokenizer(base)
    encoded = tokenizer(train.texts, truncation=True, max_length=PAD_LENGTH)
    ids = label_ids(train)
    features = [{**{k: encoded[k][i] for k in encoded}, "labels": ids[i]} for i in range(len(ids))]
    lengths = [len(f["input_ids"]) for f in features]
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    rng = random.Random(SEED)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for idx in forever(lambda _: length_grouped_batches(lengths, args.batch_size, rng)):
            yield dict(collate([features[i] for i in idx]))

    model = fresh_model(base)
    seconds, samples, width = timed_loop(model, batches(), args.warmup, args.steps, clip=1.0)
    return Measurement(
        "hand-written loop",
        samples / seconds,
        args.steps,
        seconds,
        "dynamic padding, length-grouped batches, AdamW, clip 1.0",
        {"mean_padded_length": round(width, 2)},
    )


# -- contender c: loralab.run_training ---------------------------------------------------------


class StepClock:
    """A ProgressReporter that timestamps every optimizer step (the Trainer's on_step_end)."""

    def __init__(self) -> None:
        self.began = 0.0
        self.stamps: dict[int, float] = {}

    def start(self, total_steps: int) -> None:
        self.began = time.perf_counter()  # on_train_begin, where loralab's clock starts

    def advance(self, step: int, values: dict[str, float]) -> None:
        self.stamps[step] = time.perf_counter()

    def note(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass


def bench_loralab(
    train: LabelledTexts, dev: LabelledTexts, args: argparse.Namespace
) -> list[Measurement]:
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="loralab-bench-") as tmp:
        folder = Path(tmp)
        write_tsv(train, folder / "train.tsv")
        write_tsv(dev, folder / "dev.tsv")
        config = TrainConfig(
            experiment="bench-throughput",
            base_model=args.base_model,
            train_file=str(folder / "train.tsv"),
            validation_file=str(folder / "dev.tsv"),
            text_column="sentence",
            label_column="label",
            labels=tuple(LABELS),
            max_length=PAD_LENGTH,
            lora_r=LORA_R,
            lora_alpha=LORA_ALPHA,
            lora_dropout=LORA_DROPOUT,
            lora_target_modules=TARGET_MODULES,
            batch_size=args.batch_size,
            learning_rate=LEARNING_RATE,
            max_steps=total,
            eval_steps=total,  # one evaluation, at the end (not counted in samples/s)
            early_stopping_patience=0,
            logging_steps=10,
            seed=SEED,
            device="cpu",
            precision="fp32",  # the same precision as the other contenders
        )
        clock = StepClock()
        started = time.perf_counter()
        result = run_training(config, folder / "results", progress=clock)
        wall = time.perf_counter() - started
    steady_from = clock.stamps.get(args.warmup)
    steady_to = clock.stamps.get(total)
    # TrainResult.train_seconds runs from on_train_begin to on_train_end, less evaluation time.
    # What it counts beyond the optimizer steps (checkpoint saving, loading the best model):
    outside_steps = result.train_seconds - (steady_to - clock.began) if steady_to else None
    measurements = [
        Measurement(
            "loralab",
            result.samples_per_second,
            total,
            result.train_seconds,
            f"TrainResult.samples_per_second over all {total} steps (evaluation excluded)",
            {
                "run_training_wall_seconds": round(wall, 2),
                "device": result.device,
                "train_seconds_outside_steps": None
                if outside_steps is None
                else round(outside_steps, 3),
                "accuracy_on_eval_rows": round(float(result.report["accuracy"]), 4),
            },
        )
    ]
    if steady_from is not None and steady_to is not None and steady_to > steady_from:
        seconds = steady_to - steady_from
        measurements.append(
            Measurement(
                "loralab (steady)",
                args.steps * args.batch_size / seconds,
                args.steps,
                seconds,
                f"steps {args.warmup + 1}..{total}, the same timed window as the other contenders",
            )
        )
    return measurements


# -- report ------------------------------------------------------------------------------------


def ratio(value: float, reference: float | None) -> float | None:
    return value / reference if reference else None


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def target(goal: float, value: float | None) -> dict[str, Any]:
    """A ratio target; ``met`` is None where the reference contender was not run."""
    return {"target": goal, "value": value, "met": None if value is None else value >= goal}


def report(measurements: list[Measurement], args: argparse.Namespace) -> dict[str, Any]:
    by_name = {m.contender: m.samples_per_second for m in measurements}
    hand = by_name.get("hand-written loop")
    pad = by_name.get("pad-to-128")
    rows = []
    for m in measurements:
        rows.append(
            {
                **asdict(m),
                "samples_per_second": round(m.samples_per_second, 2),
                "timed_seconds": round(m.timed_seconds, 3),
                "vs_hand_written": ratio(m.samples_per_second, hand),
                "vs_pad_to_128": ratio(m.samples_per_second, pad),
            }
        )
    print()
    print(f"{'contender':<20} {'samples/s':>10} {'vs hand-written':>16} {'vs pad-to-128':>14}")
    for row in rows:
        print(
            f"{row['contender']:<20} {row['samples_per_second']:>10.1f} "
            f"{fmt_ratio(row['vs_hand_written']):>16} {fmt_ratio(row['vs_pad_to_128']):>14}"
        )
    lora = next((r for r in rows if r["contender"] == "loralab"), None)
    # Targets are judged like for like: the same timed window (warm-up excluded) for everyone.
    steady = next((r for r in rows if r["contender"] == "loralab (steady)"), lora)
    targets = {}
    if lora is not None and steady is not None:
        v_hand, v_pad = steady["vs_hand_written"], steady["vs_pad_to_128"]
        targets = {
            "loralab_vs_hand_written": target(TARGET_VS_HAND, v_hand),
            "loralab_vs_pad_to_128": target(TARGET_VS_PAD, v_pad),
        }
        print()
        for name, label in (
            ("loralab_vs_hand_written", "hand-written"),
            ("loralab_vs_pad_to_128", "pad-to-128"),
        ):
            t = targets[name]
            verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
            print(
                f"target: loralab (same timed window) >= {t['target']:g}x {label}: "
                f"{fmt_ratio(t['value'])} ({verdict})"
            )
        print(
            f"loralab run_training wall clock (load, tokenize, train, evaluate, save): "
            f"{lora['extra']['run_training_wall_seconds']:.1f} s"
        )
        outside = lora["extra"]["train_seconds_outside_steps"]
        if outside is not None:
            print(
                f"loralab TrainResult.train_seconds {lora['timed_seconds']:.2f} s, of which "
                f"{outside:.2f} s fall after the last optimizer step (checkpoint save, "
                "best-model load)"
            )
    return {
        "benchmark": "train_throughput",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": str(args.data.resolve()),
        "dataset": "SST-2 (Socher et al., 2013, via GLUE)",
        "settings": {
            "base_model": args.base_model,
            "rows": args.rows,
            "batch_size": args.batch_size,
            "timed_steps": args.steps,
            "warmup_steps": args.warmup,
            "precision": "fp32",
            "device": "cpu",
            "lora_r": LORA_R,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": LORA_DROPOUT,
            "target_modules": list(TARGET_MODULES),
            "learning_rate": LEARNING_RATE,
        },
        "machine": {
            "cpu": select_device("cpu", "fp32").description,
            "cpu_bf16": cpu_supports_bf16(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "results": rows,
        "targets": targets,
    }


def quiet_transformers() -> None:
    """No weight-loading bars or load reports between the benchmark's own lines."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    load_before = load_before_measuring()
    base = resolve_model(args.base_model)
    train, dev = load_subset(args.data, args.rows, args.eval_rows)
    print(
        f"SST-2 from {args.data}: {len(train)} training rows; {args.base_model}; "
        f"batch {args.batch_size}; {args.warmup} warm-up + {args.steps} timed steps; fp32; "
        f"{torch.get_num_threads()} threads"
    )
    measurements: list[Measurement] = []
    for name, run in (
        ("pad-to-128", lambda: [bench_pad_to_128(base, train, args)]),
        ("hand-written", lambda: [bench_hand_written(base, train, args)]),
        ("loralab", lambda: bench_loralab(train, dev, args)),
    ):
        if name not in args.contenders:
            continue
        print(f"running {name} ...", flush=True)
        found = run()
        for m in found:
            print(
                f"  {m.contender}: {m.samples_per_second:.1f} samples/s "
                f"({m.timed_steps} steps in {m.timed_seconds:.1f} s)",
                flush=True,
            )
        measurements.extend(found)
        gc.collect()
    data = report(measurements, args)
    data["machine"]["load_average_before"] = [round(x, 2) for x in load_before]
    data["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
