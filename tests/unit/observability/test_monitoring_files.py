"""The shipped Prometheus config, alert rules (with their unit tests) and Grafana dashboard
are valid, and every PromQL expression in them parses (checked by promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from tests.helpers.monitoring import (
    DASHBOARD,
    MONITORING,
    PROMETHEUS_DIR,
    alert_exprs,
    dashboard,
    dashboard_exprs,
    metric_names,
    need,
    panels,
)


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_promtool_check_config(tmp_path: Path) -> None:
    # in a copy of the layout, with the metrics token start-services makes (promtool reads it)
    folder = tmp_path / "deploy" / "monitoring" / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, folder)
    (tmp_path / "results" / "services").mkdir(parents=True)
    (tmp_path / "results" / "services" / "metrics_token").write_text("a-token\n")
    done = promtool("check", "config", "prometheus.yml", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_in_one_test_and_stays_quiet_in_another() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        cases = [
            case
            for test in tests
            for case in test["alert_rule_test"]
            if case["alertname"] == rule["alert"]
        ]
        assert any(case["exp_alerts"] for case in cases), f"{rule['alert']}: no firing test"
        assert any(not case["exp_alerts"] for case in cases), f"{rule['alert']}: no quiet test"


def test_promtool_fails_a_broken_expression(tmp_path: Path) -> None:
    """The dashboard check below can fail: promtool refuses bad PromQL."""
    bad = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (queue"}]}]}
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
    assert promtool("check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = dashboard_exprs(dashboard())
    assert len(exprs) >= 20
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "dashboard.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    done = promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_panels_have_unique_ids_titles_and_a_datasource() -> None:
    board = dashboard()
    every = list(panels(board))
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    for panel in every:
        assert panel.get("title"), panel["id"]
        assert panel.get("datasource", {}).get("uid"), panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", {}).get("uid"), panel["title"]
    assert board["uid"] and board["title"]


def test_dashboard_has_the_brief_panels_and_the_operator_ones() -> None:
    titles = {p["title"] for p in panels(dashboard())}
    for title in (
        "Jobs succeeded and failed (increase)",
        "Queue length",
        "Mean task duration",
        "CPU",
        "Memory",
        "Training throughput",
        "Latency p50 / p99 per model version",
        "Low-confidence share (probability < 0.6)",
        "4xx / 5xx per second",
        "Sign-in denials",
    ):
        assert title in titles


def test_the_brief_metric_names_are_used() -> None:
    used = metric_names(dashboard_exprs(dashboard()) + alert_exprs())
    for name in (
        "task_success_total",
        "task_failure_total",
        "task_queue_length",
        "task_duration_seconds_sum",
        "system_cpu_percent",
        "system_memory_usage_gigabytes",
    ):
        assert name in used
    assert "by" not in used and "le" not in used


def test_provisioning_points_at_the_dashboard_folder_and_datasource() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    provider = yaml.safe_load((provisioning / "dashboards" / "loralab.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    assert (
        source["datasources"][0]["uid"] == dashboard()["templating"]["list"][0]["current"]["value"]
    )
    assert provider["providers"][0]["type"] == "file"
    assert DASHBOARD.exists()
