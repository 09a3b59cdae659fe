"""The MLflow Model Registry behind a small interface: versions, the stage tag, aliases.

MLflow's own stages are deprecated, so a version's stage lives in the version tag
``loralab.stage`` and the single Production version is also the target of the ``production``
alias (an alias names exactly one version, which makes "one Production" structural).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from loralab.infra.tracking import tracking_uri
from loralab.settings import Settings

STAGE_TAG = "loralab.stage"
PRODUCTION_ALIAS = "production"
STAGING_ALIAS = "staging"
MODEL_ARTIFACT = "model"

Packager = Callable[[Any, Path], None]
"""Writes the MLflow model of an MLflow run (the ``mlflow.entities.Run``) into a new folder."""


@dataclass(frozen=True)
class RegistryVersion:
    name: str
    version: str
    run_id: str
    stage: str | None  # the loralab.stage tag
    aliases: tuple[str, ...]


def _not_found(err: MlflowException) -> bool:
    return err.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}


class MlflowModelRegistry:
    """Thin wrapper over MlflowClient's registry calls (explicit client, no global state)."""

    def __init__(self, uri: str, packager: Packager | None = None) -> None:
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.packager = packager

    @classmethod
    def from_settings(
        cls, settings: Settings, packager: Packager | None = None
    ) -> MlflowModelRegistry:
        return cls(tracking_uri(settings), packager)

    def register(self, name: str, run_id: str, artifact: str = "adapter") -> str:
        """A new version of ``name`` from the run; returns its number.

        With a packager, the run's MLflow model is written and logged first (as ``model/``)
        and the version's source is that model; a failure there raises before anything is
        registered, so a version always has its model. Without one the source is the run's
        ``artifact`` folder.
        """
        run = self.client.get_run(run_id)
        if self.packager is not None:
            artifact = MODEL_ARTIFACT
            with tempfile.TemporaryDirectory(prefix="loralab-model-") as tmp:
                model_dir = Path(tmp) / MODEL_ARTIFACT
                self.packager(run, model_dir)
                self.client.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_ARTIFACT)
        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{run.info.artifact_uri}/{artifact}"
        version = self.client.create_model_version(name, source, run_id=run_id)
        return str(version.version)

    def _to_version(self, mv: object) -> RegistryVersion:
        tags = getattr(mv, "tags", {}) or {}
        return RegistryVersion(
            name=str(mv.name),  # type: ignore[attr-defined]
            version=str(mv.version),  # type: ignore[attr-defined]
            run_id=str(mv.run_id or ""),  # type: ignore[attr-defined]
            stage=tags.get(STAGE_TAG),
            aliases=tuple(getattr(mv, "aliases", []) or []),
        )

    def get_version(self, name: str, version: str) -> RegistryVersion | None:
        try:
            return self._to_version(self.client.get_model_version(name, version))
        except MlflowException as err:
            if _not_found(err):
                return None
            raise

    def versions(self, name: str) -> list[RegistryVersion]:
        escaped = name.replace("'", "\\'")
        found = self.client.search_model_versions(f"name = '{escaped}'")
        return sorted((self._to_version(v) for v in found), key=lambda v: int(v.version))

    def alias_target(self, name: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as err:
            if _not_found(err):
                return None
            raise

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as err:
            if not _not_found(err):
                raise

    def set_stage_tag(self, name: str, version: str, stage: str) -> None:
        self.client.set_model_version_tag(name, version, STAGE_TAG, stage)

    def log_card(self, run_id: str, path: object) -> None:
        """The card as an artifact of its run (``model_card/<name>@<version>.json``)."""
        self.client.log_artifact(run_id, str(path), artifact_path="model_card")
