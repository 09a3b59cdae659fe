"""Shared by the benchmarks: is the machine quiet enough to measure?"""

from __future__ import annotations

import os


def load_before_measuring() -> tuple[float, float, float]:
    """The load average before a benchmark starts; warns when other work competes for the cores
    (read it before measuring: afterwards it only shows the benchmark's own load)."""
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    if load[0] > 0.5 * cores:
        print(
            f"warning: load average {load[0]:.2f} on {cores} cores before starting: other work "
            "is running, and the figures will be low and noisy",
            flush=True,
        )
    return load
