"""The one reader of the environment.

Every setting has the prefix ``LORALAB_``; nested sections use ``__`` (for example
``LORALAB_MLFLOW__TRACKING_URI``). A ``.env`` file in the working directory is read too.
Nothing else in loralab reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseModel):
    results_dir: Path = Field(
        default=Path("results"), description="Results home: results/<experiment>/<run_id>/."
    )


class MlflowSettings(BaseModel):
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Empty: an embedded SQLite store under the results home.",
    )
    artifact_root: str | None = Field(
        default=None,
        description="Artifact location for new experiments. Empty: <results home>/mlartifacts.",
    )
    ui_port: int = Field(default=5000, description="Port suggested for `mlflow ui`.")


class Settings(BaseSettings):
    """All runtime settings of loralab (not experiment settings: those live in TrainConfig)."""

    model_config = SettingsConfigDict(
        env_prefix="LORALAB_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    storage: StorageSettings = Field(default_factory=StorageSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


def load_settings() -> Settings:
    """Read settings from the environment and .env."""
    return Settings()
