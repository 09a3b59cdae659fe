"""charts/finetune-platform: helm lint --strict, helm template with each values file, every
rendered object valid against the Kubernetes schemas (offline), and the properties the platform
relies on, asserted on the parsed objects."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import CHART, ROOT, run, tool

VARIANTS = {
    "dev": [],
    "prod": ["-f", str(CHART / "values.prod.yaml")],
    "monitoring": ["-f", str(CHART / "values.monitoring.yaml")],
    "prod+monitoring": ["-f", str(CHART / "values.prod.yaml")]
    + ["-f", str(CHART / "values.monitoring.yaml")],
}
CRDS = {"ServiceMonitor", "PrometheusRule"}  # Prometheus Operator: not in the core schemas
WORKLOADS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}


def template(*args: str) -> str:
    return run(tool("helm"), "template", "loralab", str(CHART), "--namespace", "loralab", *args)


@pytest.fixture(scope="module", params=list(VARIANTS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    text = template(*VARIANTS[request.param])
    return request.param, [doc for doc in yaml.safe_load_all(text) if doc]


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def by_name(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [doc for doc in objects(docs, kind) if doc["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
        for doc in docs
        if doc["kind"] in WORKLOADS
    ]


def test_helm_lint_strict_with_each_values_file() -> None:
    helm = tool("helm")
    for args in VARIANTS.values():
        run(helm, "lint", "--strict", str(CHART), *args)


def test_rendered_objects_match_the_kubernetes_schemas(rendered, tmp_path: Path) -> None:
    name, docs = rendered
    core = [doc for doc in docs if doc["kind"] not in CRDS]
    path = tmp_path / f"{name.replace('+', '-')}.yaml"
    path.write_text(yaml.safe_dump_all(core))
    validate = tool("kubernetes-validate")
    for version in ("1.30.0", "1.34.0"):
        run(validate, "--strict", "--quiet", "-k", version, str(path))


def test_no_container_runs_as_root(rendered) -> None:
    _, docs = rendered
    for where, spec in pod_specs(docs):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 0) != 0, where
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container.get("securityContext", {})
            assert context.get("runAsUser", pod["runAsUser"]) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where


def test_every_container_has_probes_requests_and_limits(rendered) -> None:
    _, docs = rendered
    for where, spec in pod_specs(docs):
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (where, part)
        if where.startswith("Job/"):
            continue  # a Job ends; probes are for long-running processes
        for container in spec["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, where


def test_prod_renders_no_inline_secret() -> None:
    docs = [d for d in yaml.safe_load_all(template(*VARIANTS["prod"])) if d]
    assert not objects(docs, "Secret")
    secret_words = ("SECRET", "PASSWORD", "TOKEN", "DB__URL", "BACKEND_STORE_URI", "AWS_")
    for config in objects(docs, "ConfigMap"):
        assert not [k for k in config.get("data", {}) if any(w in k for w in secret_words)]
    for where, spec in pod_specs(docs):
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                if any(word in env["name"] for word in secret_words):
                    assert "value" not in env, (where, env["name"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] == "loralab-secrets", where


def test_prod_refuses_to_render_without_an_existing_secret() -> None:
    helm = tool("helm")
    args = ["template", "loralab", str(CHART), *VARIANTS["prod"], "--set", "secret.existingSecret="]
    done = run(helm, *args, check=False)
    assert "kind: Secret" not in done
    import subprocess

    result = subprocess.run([helm, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "existingSecret" in result.stderr


def test_dev_secret_is_random_not_a_value_from_the_chart() -> None:
    first = [d for d in yaml.safe_load_all(template()) if d]
    second = [d for d in yaml.safe_load_all(template()) if d]
    key = "LORALAB_AUTH__SECRET_KEY"
    a, b = (by_name(docs, "Secret", "-secrets")["stringData"][key] for docs in (first, second))
    assert len(a) >= 32 and a != b
    values = (CHART / "values.yaml").read_text()
    assert a not in values


def test_the_cuda_worker_requests_a_gpu_on_gpu_nodes() -> None:
    docs = [d for d in yaml.safe_load_all(template(*VARIANTS["prod"])) if d]
    prod = yaml.safe_load((CHART / "values.prod.yaml").read_text())
    pool = next(p for p in prod["workers"] if p["queue"] == "cuda")
    worker = by_name(docs, "Deployment", "-worker-cuda")
    spec = worker["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == pool["gpu"] >= 1
    assert container["args"][:3] == ["worker", "--queues", "cuda"]
    assert "cuda" in container["image"]
    assert spec["nodeSelector"] == pool["nodeSelector"]
    assert spec["tolerations"] == pool["tolerations"]
    cpu = by_name(docs, "Deployment", "-worker-cpu")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_one_worker_deployment_per_enabled_pool(rendered) -> None:
    name, docs = rendered
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if name.startswith("prod"):
        values = yaml.safe_load((CHART / "values.prod.yaml").read_text())
    pools = {p["queue"] for p in values["workers"] if p["enabled"]}
    workers = [d for d in objects(docs, "Deployment") if "-worker-" in d["metadata"]["name"]]
    assert {d["metadata"]["labels"]["loralab.dev/queue"] for d in workers} == pools


def test_api_migrates_before_it_starts_and_upgrades_migrate_first(rendered) -> None:
    _, docs = rendered
    api = by_name(docs, "Deployment", "-api")["spec"]["template"]["spec"]
    assert api["initContainers"][0]["args"] == ["migrate"]
    job = by_name(docs, "Job", "-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_api_worker_and_serve_share_the_results_volume(rendered) -> None:
    name, docs = rendered
    claims = set()
    for doc in objects(docs, "Deployment"):
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "api" or component == "serve" or component.startswith("worker-"):
            volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
            claims.add(volumes["results"]["persistentVolumeClaim"]["claimName"])
    assert len(claims) == 1
    pvc = by_name(docs, "PersistentVolumeClaim", "-results")
    expected = "ReadWriteMany" if name.startswith("prod") else "ReadWriteOnce"
    assert pvc["spec"]["accessModes"] == [expected]


def test_autoscalers_and_disruption_budgets(rendered) -> None:
    name, docs = rendered
    pdbs = {d["metadata"]["name"].rsplit("-", 1)[-1] for d in objects(docs, "PodDisruptionBudget")}
    assert {"api", "serve", "ui"} <= pdbs
    hpas = {d["spec"]["scaleTargetRef"]["name"] for d in objects(docs, "HorizontalPodAutoscaler")}
    if name.startswith("prod"):
        assert hpas == {"loralab-finetune-platform-api", "loralab-finetune-platform-serve"}
        api = by_name(docs, "Deployment", "-api")
        assert "replicas" not in api["spec"], "the HPA owns the replica count"


def test_only_the_api_and_the_ui_are_reachable_from_outside(rendered) -> None:
    _, docs = rendered
    policies = {d["metadata"]["name"]: d for d in objects(docs, "NetworkPolicy")}
    deny = policies["loralab-finetune-platform-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]
    for name in ("mlflow", "redis"):
        rules = policies[f"loralab-finetune-platform-{name}"]["spec"]["ingress"]
        for rule in rules:
            for peer in rule["from"]:
                labels = peer["podSelector"]["matchLabels"]
                assert labels["app.kubernetes.io/instance"] == "loralab"
                assert "namespaceSelector" not in peer
    for ingress in objects(docs, "Ingress"):
        backends = {
            path["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert backends <= {"loralab-finetune-platform-api", "loralab-finetune-platform-ui"}
    for service in objects(docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]


def test_prod_ingress_has_tls() -> None:
    docs = [d for d in yaml.safe_load_all(template(*VARIANTS["prod"])) if d]
    (ingress,) = objects(docs, "Ingress")
    hosts = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert hosts == {rule["host"] for rule in ingress["spec"]["rules"]}


def test_prod_uses_external_postgresql_and_an_object_store() -> None:
    docs = [d for d in yaml.safe_load_all(template(*VARIANTS["prod"])) if d]
    names = {d["metadata"]["name"] for d in objects(docs, "Deployment")}
    assert not any(name.endswith("-postgresql") for name in names)
    mlflow = by_name(docs, "Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert any(arg.startswith("--artifacts-destination=s3://") for arg in mlflow["args"])
    assert all(env["name"] != "MLFLOW_BACKEND_STORE_URI" for env in mlflow.get("env", []))


def test_monitoring_objects_come_from_the_monitoring_files() -> None:
    docs = [d for d in yaml.safe_load_all(template(*VARIANTS["monitoring"])) if d]
    alerts = yaml.safe_load((ROOT / "deploy/monitoring/prometheus/alerts.yml").read_text())
    (rule,) = objects(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == alerts["groups"]
    (monitor,) = objects(docs, "ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "metrics"}
    dashboard = by_name(docs, "ConfigMap", "-dashboard")
    source = (ROOT / "deploy/monitoring/grafana/dashboards/loralab.json").read_text()
    assert dashboard["data"]["loralab.json"].strip() == source.strip()
    dev = [d for d in yaml.safe_load_all(template()) if d]
    assert not [d for d in dev if d["kind"] in CRDS]


def test_chart_copies_of_the_monitoring_files_are_current() -> None:
    pairs = {
        "files/alerts.yml": "deploy/monitoring/prometheus/alerts.yml",
        "files/loralab-dashboard.json": "deploy/monitoring/grafana/dashboards/loralab.json",
    }
    for copy, source in pairs.items():
        assert filecmp.cmp(CHART / copy, ROOT / source, shallow=False), (
            f"cp {source} charts/finetune-platform/{copy}"
        )
