"""Device and precision selection: auto|cpu|cuda|mps, with a sensible precision per device."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch


class DeviceError(ValueError):
    """The requested device or precision cannot be used on this machine."""


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # cpu | cuda | mps
    precision: str  # fp32 | bf16 | fp16
    description: str  # for logs and tags, e.g. "cpu (AMD EPYC, 2 threads, bf16)"


@cache
def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), detected not assumed."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def _auto_precision(device: str) -> str:
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"  # mps: fp16 autocast training is still fragile there


def select_device(requested: str = "auto", precision: str = "auto") -> DeviceChoice:
    """Pick the device and precision; an impossible request raises :class:`DeviceError`."""
    cuda_ok = torch.cuda.is_available()
    if requested == "auto":
        device = "cuda" if cuda_ok else "mps" if mps_available() else "cpu"
    elif requested == "cuda" and not cuda_ok:
        raise DeviceError(
            "device=cuda, but CUDA is not available on this machine (use cpu or auto)"
        )
    elif requested == "mps" and not mps_available():
        raise DeviceError("device=mps, but Apple MPS is not available on this machine")
    elif requested in {"cpu", "cuda", "mps"}:
        device = requested
    else:
        raise DeviceError(f"device={requested!r} is not one of auto, cpu, cuda, mps")

    chosen = _auto_precision(device) if precision == "auto" else precision
    if chosen == "fp16" and device == "cpu":
        raise DeviceError("precision=fp16 is not supported for training on CPU (use bf16 or fp32)")
    if chosen == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("precision=bf16, but this GPU does not support bf16 (use fp16)")
    if chosen not in {"fp32", "bf16", "fp16"}:
        raise DeviceError(f"precision={precision!r} is not one of auto, fp32, bf16, fp16")

    if device == "cuda":
        name = torch.cuda.get_device_name(0)
    elif device == "mps":
        name = "Apple MPS"
    else:
        name = f"{_cpu_name()}, {torch.get_num_threads()} threads"
    return DeviceChoice(device, chosen, f"{device} ({name}, {chosen})")
