"""The deployment make targets: listed by `make help`, and `make k8s-template` renders the chart
with no cluster; the others are checked as dry runs (no engine, no cluster here)."""

from __future__ import annotations

import yaml

from tests.deploy.tools import run, tool

TARGETS = (
    "docker-build",
    "compose-up",
    "compose-down",
    "k8s-quick-deploy",
    "k8s-port-forward",
    "k8s-template",
)


def test_help_lists_the_deployment_targets() -> None:
    listed = {line.split()[0] for line in run("make", "-s", "help").splitlines() if line.strip()}
    assert set(TARGETS) <= listed


def test_k8s_template_prints_the_rendered_chart() -> None:
    helm = tool("helm")
    out = run("make", "-s", "k8s-template", f"HELM={helm}")
    kinds = {doc["kind"] for doc in yaml.safe_load_all(out) if doc}
    assert {"Deployment", "Service", "NetworkPolicy", "Secret"} <= kinds


def test_quick_deploy_waits_for_the_rollout_with_values_yaml() -> None:
    plan = run("make", "-n", "k8s-quick-deploy")
    assert "helm upgrade --install" in plan and "--wait" in plan
    assert "charts/finetune-platform/values.yaml" in plan and "rollout status" in plan


def test_docker_build_makes_the_cpu_and_the_cuda_image() -> None:
    plan = run("make", "-n", "docker-build")
    assert "docker build -t loralab:dev ." in plan
    assert "TORCH_VARIANT=cu128" in plan
