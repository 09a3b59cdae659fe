"""Metrics of several processes behind one port (``loralab api --workers N``): any process's
``/metrics`` shows the totals of all, and the scrape-time collectors once.

prometheus_client picks its multiprocess mode at import, so each process here is a fresh
interpreter with ``PROMETHEUS_MULTIPROC_DIR`` set, as uvicorn's spawned workers are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORK = """
import sys
from loralab.observability.metrics import Metrics, multiprocess_mode
assert multiprocess_mode()
metrics = Metrics()
for _ in range(int(sys.argv[1])):
    metrics.http_requests.labels("POST", "/login", "401").inc()
metrics.models_loaded.set(int(sys.argv[1]))
if sys.argv[2] == "render":
    sys.stdout.write(metrics.render().decode())
"""


def _run(folder: Path, count: int, render: bool) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", WORK, str(count), "render" if render else "-"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def _values(text: str, prefix: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]


def test_each_process_renders_the_totals_of_all(tmp_path: Path) -> None:
    _run(tmp_path, 3, render=False)
    _run(tmp_path, 4, render=False)
    text = _run(tmp_path, 2, render=True)
    requests = 'loralab_http_requests_total{method="POST",route="/login",status="401"}'
    assert _values(text, requests) == [9.0]
    assert _values(text, "loralab_models_loaded ") == [4.0]  # the most in any one process
    # the collectors of the answering process, each family once
    assert len(_values(text, "process_start_time_seconds")) == 1
    assert text.count("# TYPE loralab_http_requests_total counter") == 1


def test_without_the_folder_a_process_renders_its_own() -> None:
    from loralab.observability.metrics import Metrics, multiprocess_mode

    assert not multiprocess_mode()
    metrics = Metrics()
    metrics.logins.labels("denied").inc()
    assert 'loralab_logins_total{outcome="denied"} 1.0' in metrics.render().decode()
