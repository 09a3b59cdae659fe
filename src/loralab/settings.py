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


class DatasetSettings(BaseModel):
    store_dir: Path | None = Field(
        default=None,
        description="Dataset store (immutable copies + version records). "
        "Empty: <results home>/datasets.",
    )
    max_rows: int = Field(
        default=5_000_000, ge=1, description="A dataset file with more rows is an error."
    )
    max_bytes: int = Field(
        default=2_000_000_000, ge=1, description="A dataset file larger than this is an error."
    )
    imbalance_ratio: float = Field(
        default=10.0,
        ge=1.0,
        description="Warn when the largest class has more than this many times the rows of "
        "the smallest.",
    )
    truncation_warn_share: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Warn when more than this share of texts exceed max_length tokens.",
    )
    max_examples: int = Field(
        default=20, ge=1, le=10_000, description="Rows listed per kind of problem in a report."
    )


class RegistrySettings(BaseModel):
    card_dir: Path | None = Field(
        default=None,
        description="Model card folder. Empty: data/model_registry beside the results home "
        "(./data/model_registry with the default results home).",
    )
    promotion_gate: bool = Field(
        default=True,
        description="Production needs gate_metric at least as good as the current Production "
        "on the same dataset version (override per promotion with a reason).",
    )
    gate_metric: str = Field(
        default="accuracy", min_length=1, description="Metric the promotion gate compares."
    )


class Settings(BaseSettings):
    """All runtime settings of loralab (not experiment settings: those live in TrainConfig)."""

    model_config = SettingsConfigDict(
        env_prefix="LORALAB_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    storage: StorageSettings = Field(default_factory=StorageSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    datasets: DatasetSettings = Field(default_factory=DatasetSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)

    @property
    def dataset_store_dir(self) -> Path:
        """Where registered datasets live: the configured store or <results home>/datasets."""
        return self.datasets.store_dir or self.storage.results_dir / "datasets"

    @property
    def registry_card_dir(self) -> Path:
        """Model cards: the configured folder or <results home>/../data/model_registry."""
        return self.registry.card_dir or self.storage.results_dir.parent / "data" / "model_registry"


def load_settings() -> Settings:
    """Read settings from the environment and .env."""
    return Settings()
