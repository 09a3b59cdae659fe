"""Resume anywhere: rebuild a run folder that another machine trained, from the shared store.

With shared artifacts on (``mlflow.shared_artifacts``), training keeps a copy of each complete
checkpoint, and of the run's ``config.yaml`` and ``run.json``, in its MLflow run's
``checkpoints/`` artifacts (``infra.artifacts.CheckpointMirror``). A machine asked to resume a
run it does not have (a job whose worker died elsewhere, ``loralab resume RUN``) finds the
MLflow run by its ``loralab.run_id`` tag and rebuilds ``results/<experiment>/<run_id>/`` from
those copies; resuming then goes on as on the machine that started it, in the same MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loralab.errors import NotFound
from loralab.infra.artifacts import CheckpointMirror, shared_artifacts_on
from loralab.infra.tracking import RUN_ID_TAG, MlflowTracker
from loralab.settings import Settings
from loralab.training.checkpoints import MARKER, checkpoint_step
from loralab.training.files import file_lock
from loralab.training.runs import RunNotFound, RunPaths, find_run, update_state

log = logging.getLogger("loralab.experiments")
TRAINER_STATE = "trainer_state.json"  # the Hugging Face Trainer's state in a checkpoint


def _tracked_runs(client: Any, run_id: str, experiment: str | None) -> list[Any]:
    """The MLflow runs tagged with loralab run ``run_id``, newest first (in ``experiment``
    when given, else in every experiment)."""
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found is not None else []
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    return list(
        client.search_runs(
            ids, filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", order_by=["start_time DESC"]
        )
    )


def rebuild_run(settings: Settings, run_id: str, experiment: str | None = None) -> RunPaths | None:
    """The run folder of ``run_id`` on this machine: the local one, else (shared artifacts on)
    one rebuilt from the newest MLflow run tagged with it that has a complete checkpoint copy.

    None when shared artifacts are off or no such copy exists. The folder appears whole or not
    at all (downloaded beside it, checked against each checkpoint's manifest, renamed).
    """
    results = settings.storage.results_dir
    try:
        return find_run(results, run_id)
    except RunNotFound:
        pass
    if not shared_artifacts_on(settings):
        return None
    client = MlflowTracker.from_settings(settings).client
    mirror = CheckpointMirror(client, MARKER)
    for tracked in _tracked_runs(client, run_id, experiment):
        if mirror.complete(tracked.info.run_id):
            name = client.get_experiment(tracked.info.experiment_id).name
            with file_lock(results / ".locks" / f"rebuild-{run_id}.lock"):
                return _rebuild(results / name / run_id, mirror, tracked.info.run_id)
    return None


def _rebuild(root: Path, mirror: CheckpointMirror, mlflow_run_id: str) -> RunPaths:
    """Download the copies into a folder beside ``root`` and rename it into place."""
    if (root / "config.yaml").is_file():  # another process rebuilt it meanwhile
        return RunPaths(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{root.name}.rebuild-", dir=root.parent))
    try:
        copies = mirror.download(mlflow_run_id, temp)
        staged = RunPaths(temp / root.name)
        staged.checkpoints.mkdir(parents=True)
        for name in ("config.yaml", "run.json"):
            if (copies / name).is_file():
                os.replace(copies / name, staged.root / name)
        if not staged.config.is_file():
            raise NotFound(f"run {root.name}: its copy in MLflow run {mlflow_run_id} has no config")
        for checkpoint in sorted(copies.iterdir()):
            if checkpoint.is_dir() and checkpoint_step(checkpoint) is not None:
                os.replace(checkpoint, staged.checkpoints / checkpoint.name)
        _relocate_best(staged.checkpoints, root / "artifacts" / "checkpoints")
        update_state(staged, tracker_run_id=mlflow_run_id)
        os.replace(staged.root, root)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    log.info("run %s rebuilt from MLflow run %s", root.name, mlflow_run_id)
    return RunPaths(root)


def _relocate_best(folder: Path, final: Path) -> None:
    """The Trainer's state names its best checkpoint by absolute path on the machine that
    saved it; point it at the same checkpoint here (else resuming forgets which was best)."""
    for state_file in folder.glob(f"checkpoint-*/{TRAINER_STATE}"):
        state = json.loads(state_file.read_text(encoding="utf-8"))
        best = state.get("best_model_checkpoint")
        if best:
            state["best_model_checkpoint"] = str(final / Path(best).name)
            state_file.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")


def end_abandoned_tracking(settings: Settings, run_id: str, experiment: str) -> int:
    """With shared artifacts on: end KILLED the MLflow runs of ``run_id`` still RUNNING, for a
    run another machine left before its first complete checkpoint (this machine trains it again
    from the start). Returns how many were ended; tracking down: logged, 0."""
    if not shared_artifacts_on(settings):
        return 0
    try:
        client = MlflowTracker.from_settings(settings).client
        running = [
            r for r in _tracked_runs(client, run_id, experiment) if r.info.status == "RUNNING"
        ]
        for tracked in running:
            client.set_terminated(tracked.info.run_id, status="KILLED")
    except Exception as err:  # noqa: BLE001 - a tracker that is down must not block the job
        log.warning("run %s: cannot end its MLflow runs: %s", run_id, err)
        return 0
    return len(running)
