"""MLflow tracking behind the training library's MetricLogger interface.

Metrics are buffered and sent in batches (every two seconds, or sooner when many pile up), so
logging every step costs the training loop next to nothing while curves stay live in the UI.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from loralab.errors import LoralabError
from loralab.settings import Settings

RUN_ID_TAG = "loralab.run_id"
log = logging.getLogger("loralab.tracking")


class TrackingUnavailable(LoralabError):
    """The MLflow store cannot be reached or written."""


FLUSH_SECONDS = 2.0
FLUSH_COUNT = 500


def tracking_uri(settings: Settings) -> str:
    """The configured tracking URI, or the embedded SQLite store under the results home."""
    if settings.mlflow.tracking_uri:
        return settings.mlflow.tracking_uri
    db = (settings.storage.results_dir / "mlflow.db").resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_root(settings: Settings) -> str | None:
    if settings.mlflow.artifact_root:
        return settings.mlflow.artifact_root
    if settings.mlflow.tracking_uri:
        return None  # a tracking server decides
    return (settings.storage.results_dir / "mlartifacts").resolve().as_uri()


class MlflowTracker:
    """One MLflow run at a time, through an explicit client (no global mlflow state)."""

    def __init__(
        self, uri: str, artifacts: str | None, *, mirror_checkpoints: bool = False
    ) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.artifacts = artifacts
        self.mirror_checkpoints = mirror_checkpoints  # see save_checkpoint
        self.run_id: str | None = None
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowTracker:
        from loralab.infra.artifacts import shared_artifacts_on

        return cls(
            tracking_uri(settings),
            artifact_root(settings),
            mirror_checkpoints=shared_artifacts_on(settings),
        )

    def _experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return str(experiment.experiment_id)
        location = f"{self.artifacts}/{name}" if self.artifacts else None
        return str(self.client.create_experiment(name, artifact_location=location))

    def _check_server(self) -> None:
        """Fail in seconds, not after MLflow's minutes of retries, when a server is down."""
        if not self.uri.startswith(("http://", "https://")):
            return
        import requests

        try:
            requests.get(f"{self.uri.rstrip('/')}/health", timeout=5).raise_for_status()
        except requests.RequestException as err:
            raise TrackingUnavailable(
                f"MLflow tracking server {self.uri} is not reachable ({type(err).__name__}); "
                "start it, or unset LORALAB_MLFLOW__TRACKING_URI to use the embedded store"
            ) from None

    def start_run(self, experiment: str, run_name: str, existing: str | None) -> str:
        self._check_server()
        try:
            if existing:
                self.client.update_run(existing, status="RUNNING")
                self.run_id = existing
            else:
                run = self.client.create_run(
                    self._experiment_id(experiment), run_name=run_name, tags={RUN_ID_TAG: run_name}
                )
                self.run_id = run.info.run_id
        except Exception as err:  # noqa: BLE001 - any store failure means the same to the user
            raise TrackingUnavailable(
                f"MLflow tracking store {self.uri} cannot start a run: {type(err).__name__}: "
                f"{str(err)[:300]}"
            ) from None
        return self.run_id

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("no MLflow run started")
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self._require_run(), params=items[start : start + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self._require_run(), tags=[RunTag(k, v) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._buffer) >= FLUSH_COUNT or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        run_id = self._require_run()
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if not path.exists():
            return
        run_id = self._require_run()
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path=folder)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path=folder)

    def save_checkpoint(self, checkpoint: Path, run_files: list[Path]) -> None:
        """With shared artifacts: a copy of a complete checkpoint (and ``run_files``) in the
        run's artifacts, so another machine can resume the run; the metrics up to it are sent
        first, so the curves a resumed run continues are whole. A failed upload is logged, not
        raised: the training goes on, only resuming elsewhere loses this checkpoint."""
        if not self.mirror_checkpoints or self.run_id is None:
            return
        from loralab.infra.artifacts import CheckpointMirror
        from loralab.training.checkpoints import MARKER

        try:
            self.flush()
            CheckpointMirror(self.client, MARKER).upload(self.run_id, checkpoint, run_files)
        except Exception as err:  # noqa: BLE001 - the local checkpoint is whole; this is a copy
            log.warning("checkpoint %s not copied to the artifact store: %s", checkpoint.name, err)

    def drop_checkpoints(self, checkpoints: list[Path]) -> None:
        """Delete the copies of checkpoints that retention deleted on disk (logged on failure)."""
        if not self.mirror_checkpoints or self.run_id is None or not checkpoints:
            return
        from loralab.infra.artifacts import CheckpointMirror
        from loralab.training.checkpoints import MARKER

        try:
            CheckpointMirror(self.client, MARKER).delete(self.run_id, [c.name for c in checkpoints])
        except Exception as err:  # noqa: BLE001 - a stale copy costs space, never correctness
            log.warning("checkpoint copies not deleted from the artifact store: %s", err)

    def end_run(self, status: str) -> None:
        if self.run_id is None:
            return
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)
            self.run_id = None

    def log_dataset_input(
        self,
        run_id: str,
        name: str,
        digest: str,
        source: str,
        *,
        context: str = "training",
        profile: dict[str, Any] | None = None,
    ) -> None:
        """Record a dataset as an input of a run (MLflow's dataset lineage), by name and digest."""
        import json

        dataset = Dataset(
            name=name,
            digest=digest[:36],
            source_type="local",
            source=json.dumps({"uri": source}),
            schema=json.dumps(
                {
                    "mlflow_colspec": [
                        {"type": "string", "name": "text"},
                        {"type": "string", "name": "label"},
                    ]
                }
            ),
            profile=json.dumps(profile or {}),
        )
        tags = [InputTag("mlflow.data.context", context)]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])

    def log_artifacts_to(self, run_id: str, path: Path, folder: str | None = None) -> None:
        """Add a file or folder to a run that may already have ended (e.g. a data analysis)."""
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path=folder)
        elif path.is_file():
            self.client.log_artifact(run_id, str(path), artifact_path=folder)
