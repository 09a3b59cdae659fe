"""Host metrics every loralab process exports: CPU, memory and (where a GPU exists) GPU memory.

Computed at scrape time by a collector, so a process never runs a sampling thread for them.
``system_cpu_percent`` is the host's CPU use since the previous scrape (psutil keeps the last
reading), which is what a Prometheus gauge scraped every few seconds should say.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

GB = 1e9


class SystemCollector(Collector):
    """``system_cpu_percent``, ``system_memory_usage_gigabytes``, ``system_memory_total_gigabytes``
    and, where an NVIDIA GPU exists, ``loralab_gpu_memory_used_bytes{device}``."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading starts the interval

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "system_cpu_percent", "Host CPU use, percent of all cores.", psutil.cpu_percent(None)
        )
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily(
            "system_memory_usage_gigabytes",
            "Host memory in use (total minus available), GB.",
            (memory.total - memory.available) / GB,
        )
        yield GaugeMetricFamily(
            "system_memory_total_gigabytes", "Host memory installed, GB.", memory.total / GB
        )
        gpu = gpu_memory_used()
        if gpu:
            family = GaugeMetricFamily(
                "loralab_gpu_memory_used_bytes",
                "GPU memory in use on the device (all processes), bytes.",
                labels=["device"],
            )
            for device, used in gpu.items():
                family.add_metric([device], used)
            yield family


def gpu_memory_used() -> dict[str, float]:
    """Bytes in use per NVIDIA GPU (all processes), from ``nvidia-smi``; nothing without one.

    Not torch: initialising CUDA in a Celery worker's parent process would break CUDA in the
    pool children it forks afterwards.
    """
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return {}
    try:
        out = subprocess.run(  # noqa: S603 - a fixed command, no user input
            [tool, "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out: str) -> dict[str, float]:
    """``"0, 1234\n1, 0"`` (index, MiB) -> ``{"cuda:0": bytes, ...}``; odd lines are skipped."""
    used: dict[str, float] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].replace(".", "", 1).isdigit():
            used[f"cuda:{parts[0]}"] = float(parts[1]) * 1024 * 1024
    return used
