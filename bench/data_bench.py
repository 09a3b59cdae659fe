"""Time and memory of the training loader, dataset validation and analysis on SST-2 train.tsv.

Uses the shared SST-2 data by default (``../shared/data/sst2/train.tsv``, not part of the
project); pass another ``sentence<TAB>label`` file as the argument. Each measurement runs in a
fresh subprocess so its peak RSS is its own: the training loader (``read_labelled_texts``, which
reads through the same reader as validation), validation of the first quarter of the rows and of
all of them (memory should stay flat in the rows streamed), and analysis of all rows. The
default tokenizer (minilm-l6) measures token lengths. Targets: load < 2 s, validation < 10 s,
analysis < 30 s on 2 cores.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/data_bench.py [../shared/data/sst2/train.tsv]

Writes ``bench/out/data_bench.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import load_before_measuring

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
TARGETS = {"load": 2.0, "validate": 10.0, "analyze": 30.0}


def _measure(phase: str, path: str, out_dir: str) -> dict[str, object]:
    """Run one phase in this process; time it and read this process's peak RSS."""
    from loralab.datasets import service
    from loralab.settings import Settings, StorageSettings

    settings = Settings(storage=StorageSettings(results_dir=Path(out_dir) / "results"))
    spec = service.DataSpec(text_column="sentence", label_column="label")
    start = time.perf_counter()
    if phase == "load":
        from loralab.training.data import read_labelled_texts

        detail: dict[str, object] = {"rows": len(read_labelled_texts(path, "sentence", "label"))}
    elif phase == "validate":
        report = service.validate_dataset(settings, path, spec)
        detail = {
            "status": report.status,
            "rows": report.files[0].rows,
            "counts": report.counts,
            "truncation_rate": report.files[0].truncation_rate,
        }
    else:
        analysis = service.analyze_dataset(settings, path, Path(out_dir) / "analysis", spec)
        detail = {"rows": analysis.summary["rows"], "files": len(analysis.files)}
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    return {
        "phase": phase,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_mb, 1),
        **detail,
    }


def _child(phase: str, path: Path, out_dir: Path) -> dict[str, object]:
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); from data_bench import _measure; "
        f"print(json.dumps(_measure({phase!r}, {str(path)!r}, {str(out_dir)!r})))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data",
        nargs="?",
        type=Path,
        default=DEFAULT_DATA,
        help="TSV with sentence and label columns. Default: the shared SST-2 train.tsv "
        "(../shared/data/sst2, not part of the project).",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "data_bench.json")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found (the shared SST-2 data lives in ../shared/data)")
    load_before_measuring()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lines = args.data.read_text(encoding="utf-8").splitlines(keepends=True)
        quarter = work / "quarter.tsv"
        quarter.write_text("".join(lines[: 1 + (len(lines) - 1) // 4]), encoding="utf-8")
        results = [
            {**_child("load", args.data, work), "subset": "all rows"},
            {**_child("validate", quarter, work), "subset": "first quarter"},
            {**_child("validate", args.data, work), "subset": "all rows"},
            {**_child("analyze", args.data, work), "subset": "all rows"},
        ]
    print(f"data: {args.data}  cores: {os.cpu_count()}")
    print(f"{'phase':<10}{'rows':<16}{'seconds':>9}{'target':>9}{'peak RSS MB':>14}")
    for r in results:
        target = TARGETS[str(r["phase"])] if r["subset"] == "all rows" else None
        mark = "" if target is None else ("ok" if float(r["seconds"]) < target else "MISSED")
        shown = f"< {target:g} s" if target else "-"
        print(
            f"{r['phase']!s:<10}{r['rows']!s:<16}{r['seconds']:>9}{shown:>9}"
            f"{r['peak_rss_mb']:>14}  {mark}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "data": str(args.data),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "targets_seconds": TARGETS,
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
