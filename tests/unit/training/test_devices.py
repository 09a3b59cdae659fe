"""Device and precision selection, independent of the machine the tests run on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from loralab.training import devices
from loralab.training.devices import DeviceChoice, DeviceError, select_device

REAL_CPU_SUPPORTS_BF16 = devices.cpu_supports_bf16


@pytest.fixture(autouse=True)
def _no_accelerators(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts on a machine without CUDA or MPS, with a fresh bf16 detection cache."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    REAL_CPU_SUPPORTS_BF16.cache_clear()
    yield
    REAL_CPU_SUPPORTS_BF16.cache_clear()  # no fake /proc/cpuinfo answer outlives its test


def set_cpu_bf16(monkeypatch: pytest.MonkeyPatch, supported: bool) -> None:
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: supported)


def test_cpu_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    set_cpu_bf16(monkeypatch, False)
    choice = select_device("cpu", "auto")
    assert isinstance(choice, DeviceChoice)
    assert (choice.device, choice.precision) == ("cpu", "fp32")
    assert choice.description.startswith("cpu (")
    assert f"{torch.get_num_threads()} threads" in choice.description
    assert choice.description.endswith(", fp32)")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_explicit_precision_is_kept(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    set_cpu_bf16(monkeypatch, precision == "fp32")  # the explicit choice wins over detection
    assert select_device("cpu", precision).precision == precision


def test_cuda_unavailable_raises_clear_error() -> None:
    with pytest.raises(DeviceError) as info:
        select_device("cuda", "auto")
    message = str(info.value)
    assert "device=cuda" in message
    assert "CUDA is not available" in message
    assert "cpu" in message  # says what to use instead


def test_mps_unavailable_raises() -> None:
    with pytest.raises(DeviceError, match="device=mps.*not available"):
        select_device("mps", "auto")


def test_auto_falls_back_to_cpu() -> None:
    assert select_device("auto", "fp32").device == "cpu"


def test_auto_prefers_mps_over_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    choice = select_device("auto", "auto")
    assert (choice.device, choice.precision) == ("mps", "fp32")
    assert choice.description == "mps (Apple MPS, fp32)"


def test_unknown_device_raises() -> None:
    with pytest.raises(DeviceError, match="'gpu' is not one of auto, cpu, cuda, mps"):
        select_device("gpu", "auto")


def test_unknown_precision_raises() -> None:
    with pytest.raises(DeviceError, match="precision='int8'"):
        select_device("cpu", "int8")


@pytest.mark.parametrize("requested", ["cpu", "auto"])
def test_fp16_on_cpu_raises(requested: str) -> None:
    with pytest.raises(DeviceError, match="fp16 is not supported.*CPU"):
        select_device(requested, "fp16")


@pytest.mark.parametrize(("supported", "expected"), [(True, "bf16"), (False, "fp32")])
def test_cpu_auto_precision_follows_bf16_support(
    monkeypatch: pytest.MonkeyPatch, supported: bool, expected: str
) -> None:
    set_cpu_bf16(monkeypatch, supported)
    for requested in ("cpu", "auto"):
        choice = select_device(requested, "auto")
        assert (choice.device, choice.precision) == ("cpu", expected)
        assert choice.description.endswith(f", {expected})")


# -- bf16 detection from /proc/cpuinfo ---------------------------------------------------------

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu vme sse sse2 avx2 avx512f {extra} rdpid
bugs\t\t: sysret_ss_attrs
"""


def fake_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str | None) -> None:
    """Point the module's /proc/cpuinfo at a file of our own (or at a missing file)."""
    target = tmp_path / "cpuinfo"
    if text is not None:
        target.write_text(text)
    monkeypatch.setattr(devices, "Path", lambda _: target)
    devices.cpu_supports_bf16.cache_clear()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False), ("", False)],
)
def test_cpu_supports_bf16_reads_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: str, expected: bool
) -> None:
    fake_cpuinfo(monkeypatch, tmp_path, CPUINFO.format(extra=extra))
    assert devices.cpu_supports_bf16() is expected


def test_cpu_supports_bf16_ignores_flags_in_other_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = "model name\t: avx512_bf16 marketing\nflags\t\t: fpu sse\n"
    fake_cpuinfo(monkeypatch, tmp_path, text)
    assert devices.cpu_supports_bf16() is False


def test_cpu_supports_bf16_without_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_cpuinfo(monkeypatch, tmp_path, None)
    assert devices.cpu_supports_bf16() is False


def test_cpu_supports_bf16_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_cpuinfo(monkeypatch, tmp_path, CPUINFO.format(extra="avx512_bf16"))
    assert devices.cpu_supports_bf16() is True
    (tmp_path / "cpuinfo").write_text(CPUINFO.format(extra=""))
    assert devices.cpu_supports_bf16() is True  # detected once per process
    devices.cpu_supports_bf16.cache_clear()
    assert devices.cpu_supports_bf16() is False


def test_detected_bf16_drives_auto_precision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cpuinfo(monkeypatch, tmp_path, CPUINFO.format(extra="avx512_bf16"))
    choice = select_device("cpu", "auto")
    assert choice.precision == "bf16"
    assert "AMD EPYC 9R14" in choice.description  # the CPU name comes from the same file
