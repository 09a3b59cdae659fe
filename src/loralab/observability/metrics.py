"""Prometheus metrics, defined once. Each app builds one :class:`Metrics` on its own registry
(so several apps in one process, as in tests, never clash) and serves it at ``GET /metrics``.

Label values are bounded: model versions (bounded by the registry), HTTP route templates (not
raw paths), status codes, and predicted label names only for models with at most
``MAX_LABEL_VALUES`` labels (others count under "other").

Several processes behind one port (``loralab api --workers N``) share their counters and
histograms through prometheus_client's multiprocess mode: :func:`shared_metrics_dir` gives the
processes a fresh folder before they start, each writes its values there, and ``render`` sums
them, so a scrape answered by any process shows the totals of all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401 - re-exported
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.core import Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from loralab.observability.system import SystemCollector

MAX_LABEL_VALUES = 20
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROBABILITY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Every metric loralab exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or process_registry()
        r = self.registry
        self.predictions = Counter(
            "loralab_predictions",
            "Texts classified, per model version and predicted label.",
            ["model_version", "label"],
            registry=r,
        )
        self.predict_latency = Histogram(
            "loralab_predict_latency_seconds",
            "Model work (tokenise + forward) per request, per model version.",
            ["model_version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.probability = Histogram(
            "loralab_predict_probability",
            "Probability of the predicted label.",
            ["model_version"],
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "loralab_predict_batch_size",
            "Texts per forward pass (micro-batches and batch requests).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.predict_errors = Counter(
            "loralab_predict_errors",
            "Prediction requests refused or failed, per HTTP status.",
            ["status"],
            registry=r,
        )
        self.models_loaded = Gauge(
            "loralab_models_loaded",
            "Model versions resident in memory (several processes: the most in any one).",
            registry=r,
            multiprocess_mode="max",
        )
        self.http_requests = Counter(
            "loralab_http_requests",
            "HTTP requests per method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "loralab_http_request_seconds",
            "HTTP request time per route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "loralab_jobs_submitted", "Training jobs submitted, per queue.", ["queue"], registry=r
        )
        self.logins = Counter(
            "loralab_logins", "Sign-in attempts per outcome.", ["outcome"], registry=r
        )

    def observe_prediction(
        self, model_version: str, label: str, n_labels: int, probability: float
    ) -> None:
        value = label if n_labels <= MAX_LABEL_VALUES else "other"
        self.predictions.labels(model_version, value).inc()
        self.probability.labels(model_version).observe(probability)

    def render(self) -> bytes:
        """The exposition text. In multiprocess mode: the counters, histograms and gauges
        above summed over every process, with this process's scrape-time collectors (process,
        system, jobs table), which would otherwise be left out or counted N times."""
        if not multiprocess_mode():
            return generate_latest(self.registry)
        own = {family.name for metric in self._own() for family in metric.describe()}
        combined = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(combined)
        combined.register(_Except(self.registry, own))
        return generate_latest(combined)

    def _own(self) -> Iterable[Counter | Gauge | Histogram]:
        return (
            self.predictions, self.predict_latency, self.probability, self.batch_size,
            self.predict_errors, self.models_loaded, self.http_requests, self.http_latency,
            self.jobs, self.logins,
        )  # fmt: skip


class _Except:
    """The families of ``registry`` not named in ``names`` (a collector for a registry)."""

    def __init__(self, registry: CollectorRegistry, names: set[str]) -> None:
        self._registry, self._names = registry, names

    def collect(self) -> Iterator[Metric]:
        return (family for family in self._registry.collect() if family.name not in self._names)


def multiprocess_mode() -> bool:
    """Whether this process's metric values live in a shared folder (prometheus_client decides
    once, at import, from ``PROMETHEUS_MULTIPROC_DIR``)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """A fresh folder for the metric values of processes started inside the block (they
    inherit ``PROMETHEUS_MULTIPROC_DIR``); removed afterwards. A fresh one every time: values
    left by an earlier run would be summed in."""
    folder = Path(tempfile.mkdtemp(prefix="loralab-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def process_registry() -> CollectorRegistry:
    """A new registry with what every loralab process exports: ``process_*``, ``python_*``
    (as prometheus_client's default registry has them) and the host's ``system_*``."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(SystemCollector())
    return registry
