"""The Dockerfile stays honest without a container engine: hadolint clean, every path it copies
exists and is in the build context, and it installs the way `make setup` does."""

from __future__ import annotations

import fnmatch
import re

from tests.deploy.tools import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_hadolint_is_clean() -> None:
    run(tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE))


def in_context(path: str) -> bool:
    """True when .dockerignore (an allow list after '*') keeps ``path`` in the build context."""
    kept = False
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            kept = negate
    return kept


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copied = []
    for line in instructions():
        if line.startswith("COPY") and "--from=" not in line:
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            copied += parts[:-1]
    assert copied, "the Dockerfile copies nothing from the context"
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such path"
        assert in_context(path), f"COPY {path}: .dockerignore leaves it out of the context"
    assert not in_context(".venv") and not in_context(".env") and not in_context("results")


def test_final_stage_is_pinned_non_root_with_a_healthcheck() -> None:
    lines = instructions()
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM")]
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    for i in stages:
        image = lines[i].split()[1]
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image}: pin the base to a full version"
    final = lines[stages[-1] :]
    assert not any(line.startswith("RUN pip") for line in final), "no installs in the final stage"
    users = [line.split()[1] for line in final if line.startswith("USER")]
    assert users and not users[-1].startswith(("0", "root"))
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert any(line.startswith("ENTRYPOINT") for line in final)


def test_installs_like_make_setup() -> None:
    """The same pinned torch through constraints.txt, then the package with the same pins."""
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"-c constraints.txt (torch==[\d.]+)", makefile)
    assert pin, "make setup no longer pins torch through constraints.txt"
    text = " ".join(instructions())
    assert "-c constraints.txt" in text and pin.group(1) in text
    assert "pip install -q -c constraints.txt ." in text
    assert pin.group(1) in (ROOT / "constraints.txt").read_text()


def test_entrypoint_runs_every_process() -> None:
    script = (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text()
    for process in ("api)", "worker)", "serve)", "ui)", "migrate)", "mlflow)"):
        assert process in script
    assert "exec loralab api --host" in script  # --workers from LORALAB_API__WORKERS
    assert "loralab.entrypoints.ui.app" in script
    run("sh", "-n", str(ROOT / "deploy" / "docker" / "entrypoint.sh"))
