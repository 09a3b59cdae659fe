""".github/workflows/ci.yml: actionlint and GitHub's workflow schema (vendored in
check-jsonschema, offline) accept it, and it does what the project's pipeline promises."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT, run, tool

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_is_clean() -> None:
    run(tool("actionlint"), "-no-color", str(WORKFLOW.relative_to(ROOT)))


def test_matches_the_github_workflow_schema() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW))


def test_lint_and_test_run_on_every_push_and_pull_request(workflow) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["**"] and "pull_request" in triggers
    test = workflow["jobs"]["test"]
    assert "if" not in test
    commands = [step.get("run", "") for step in test["steps"]]
    assert "make lint" in commands and "make test" in commands
    assert {"postgres", "redis"} <= set(test["services"])
    python = next(s for s in test["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["cache"] == "pip"


def test_helm_checks_run_on_main_with_each_values_file(workflow) -> None:
    chart = workflow["jobs"]["chart"]
    assert chart["if"] == "github.ref == 'refs/heads/main'"
    script = "\n".join(step.get("run", "") for step in chart["steps"])
    for values in ("values.yaml", "values.prod.yaml", "values.monitoring.yaml"):
        assert values in script
    assert "helm lint --strict" in script and "helm template" in script


def test_images_are_pushed_on_day_tags_with_the_tag_and_the_commit(workflow) -> None:
    assert "day-*" in workflow[True]["push"]["tags"]
    images = workflow["jobs"]["images"]
    assert images["if"] == "startsWith(github.ref, 'refs/tags/day-')"
    variants = {entry["variant"] for entry in images["strategy"]["matrix"]["include"]}
    assert variants == {"cpu", "cu128"}
    assert "vars.REGISTRY" in images["env"]["IMAGE"]
    push = next(s for s in images["steps"] if "build-push-action" in s.get("uses", ""))
    assert push["with"]["push"] is True
    assert "github.ref_name" in push["with"]["tags"] and "github.sha" in push["with"]["tags"]
