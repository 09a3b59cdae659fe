"""Host metrics: names the brief's dashboards use, sane values, nvidia-smi parsing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from loralab.observability.metrics import Metrics
from loralab.observability.system import SystemCollector, parse_nvidia_smi


def test_system_collector_reports_cpu_and_memory() -> None:
    registry = CollectorRegistry()
    registry.register(SystemCollector())
    cpu = registry.get_sample_value("system_cpu_percent")
    used = registry.get_sample_value("system_memory_usage_gigabytes")
    total = registry.get_sample_value("system_memory_total_gigabytes")
    assert cpu is not None and 0.0 <= cpu <= 100.0
    assert used is not None and total is not None and 0.0 < used < total


def test_parse_nvidia_smi_reads_mib_per_device_and_skips_junk() -> None:
    out = "0, 1024\n1, 0\nNo devices were found\n"
    assert parse_nvidia_smi(out) == {"cuda:0": 1024 * 1024 * 1024.0, "cuda:1": 0.0}
    assert parse_nvidia_smi("") == {}


def test_every_app_registry_has_the_default_process_and_python_metrics() -> None:
    text = Metrics().render().decode()
    for name in ("process_cpu_seconds_total", "python_info", "python_gc_collections_total"):
        assert name in text
    assert "system_memory_usage_gigabytes" in text
    Metrics()  # a second app in the same process does not clash
