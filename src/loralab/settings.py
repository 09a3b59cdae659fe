"""The one reader of the environment.

Every setting has the prefix ``LORALAB_``; nested sections use ``__`` (for example
``LORALAB_MLFLOW__TRACKING_URI``). A ``.env`` file in the working directory is read too.
Nothing else in loralab reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseModel):
    results_dir: Path = Field(
        default=Path("results"), description="Results home: results/<experiment>/<run_id>/."
    )
    models_dir: Path | None = Field(
        default=None,
        description="Local base models that API users may train from, named by folder name "
        "(API requests never name server paths). Empty: catalog models only.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where model versions fetched from the shared artifact store are kept "
        "(models/<name>@<version>/, checked against their manifest). Empty: "
        "<results home>/.cache.",
    )
    cache_max_mb: int = Field(
        default=20_000,
        ge=1,
        description="Size bound of that cache in MB; the least recently used versions are "
        "evicted past it (never the one just fetched).",
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
    shared_artifacts: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Share runs between machines through the tracking server's artifact store: "
        "serving fetches a model version it lacks into storage.cache_dir, training uploads "
        "each complete checkpoint, and a job resumes on any machine. auto: on when "
        "tracking_uri is an http(s) tracking server, off in embedded mode.",
    )


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
    language_mismatch: Literal["warn", "error"] = Field(
        default="warn",
        description="Most of the data in a language the base model does not read: warn, or "
        "refuse to train (loralab train and the worker).",
    )
    api_language_mismatch: Literal["warn", "error"] = Field(
        default="error",
        description="The same for jobs submitted through the API (POST /train); a request may "
        "set allow_language_mismatch to train anyway, with the warning on the job.",
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
    backend: Literal["auto", "files", "database"] = Field(
        default="auto",
        description="Where model cards, stages and stage history live. files: the card folder "
        "with stages on MLflow aliases (one machine). database: tables of the platform "
        "database, shared by every machine (the card folder is still written as an export). "
        "auto: database when db.url is set (an operator configured a database, such as the "
        "shared PostgreSQL), else files.",
    )


class ServingSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Address `loralab serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the prediction service.")
    default_model: str | None = Field(
        default=None,
        description="Model served when a request names none (NAME@production, NAME@staging, "
        "NAME@VERSION or a run id). Empty: the Production version of the newest registered "
        "model, else its newest version.",
    )
    mode: str = Field(
        default="merged",
        pattern="^(adapters|merged)$",
        description="merged: the served default version also runs from weights merged into "
        "its own copy of the base (fastest for the hot model), every other version as an "
        "adapter on a shared base; adapters: every version as an adapter (least memory).",
    )
    cache_size: int = Field(
        default=8, ge=1, le=256, description="Adapters held in memory (LRU) per service."
    )
    max_text_chars: int = Field(
        default=5000, ge=1, description="Longer texts: 413, or truncation when truncate is on."
    )
    truncate: bool = Field(
        default=False, description="Cut texts over max_text_chars instead of refusing them."
    )
    max_batch_texts: int = Field(
        default=256, ge=1, description="Most texts in one POST /predict/batch (more: 413)."
    )
    micro_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Most single requests gathered into one batch."
    )
    micro_batch_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="Longest a request waits for others to join its batch.",
    )
    refresh_seconds: float = Field(
        default=1.0,
        gt=0.0,
        description="How often the served default re-reads its stage (promote/archive), without "
        "restart; a new default answers at once (merged mode: as an adapter until its merge, "
        "done beside the model thread, is ready).",
    )
    precision: str = Field(
        default="auto",
        pattern="^(auto|fp32|bf16)$",
        description="auto: bf16 where the CPU/GPU computes it natively, else fp32.",
    )
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps.")
    threads: int | None = Field(
        default=None, ge=1, description="torch threads for model work. Empty: all cores."
    )
    onnx: bool = Field(
        default=True,
        description="merged mode: run the hot (merged) model on ONNX Runtime, exported on first "
        "use, cached with its version and checked against PyTorch before it is used (a version "
        "whose export fails is served through PyTorch). false: PyTorch only.",
    )
    onnx_threads: int | None = Field(
        default=None, ge=1, description="ONNX Runtime intra-op threads. Empty: all cores."
    )
    onnx_spin: bool = Field(
        default=True,
        description="Let idle ONNX Runtime threads busy-wait briefly for the next run: one text "
        "p50 2.9 ms instead of 4.2 on 2 quiet cores. Turn it off where the service shares its "
        "cores with other busy work (there spinning threads took the cores: 49 ms vs 22).",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="Where exported ONNX models are cached. Empty: <storage cache>/onnx "
        "(<results home>/.cache/onnx by default).",
    )


class DbSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Empty: SQLite at <results home>/loralab.db. PostgreSQL: "
        "postgresql://user@host/db (driver: psycopg 3).",
    )
    echo: bool = Field(default=False, description="Log every SQL statement.")


EXAMPLE_SECRET = "change-me-to-a-random-string-of-at-least-32-bytes"  # noqa: S105 - refused


class AuthSettings(BaseModel):
    secret_key: SecretStr = Field(
        default=SecretStr(EXAMPLE_SECRET),
        description="HS256 signing secret, at least 32 bytes; the API refuses the example value "
        "unless dev_mode is on. Make one: "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'",
    )
    dev_mode: bool = Field(
        default=False, description="Development only: allow the example or a short secret."
    )
    token_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60, description="Token lifetime.")
    login_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins per user and address before 429."
    )
    login_window_seconds: int = Field(
        default=300, ge=1, description="Window for counting failed sign-ins."
    )
    bootstrap_admin: str | None = Field(
        default=None, description="Create this admin at API start if no admin exists."
    )
    bootstrap_password: SecretStr | None = Field(
        default=None, description="Password of bootstrap_admin (at least 12 characters)."
    )


class QueueSettings(BaseModel):
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker (Redis)."
    )
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Deliveries of a job before it ends as failed."
    )
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a running job records that it is alive."
    )
    stale_after_seconds: float = Field(
        default=60.0, gt=0, description="A running job without a heartbeat this long is dead."
    )
    max_active_per_user: int = Field(
        default=3, ge=1, description="Queued + running jobs one user may have at once."
    )
    visibility_timeout: int = Field(
        default=3600, ge=10, description="Seconds before Redis redelivers an unacknowledged job."
    )
    worker_ttl_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="A worker announces its queues in Redis for this long and renews every "
        "third of it; a worker silent this long no longer counts as serving its queues.",
    )
    refuse_unserved: bool = Field(
        default=True,
        description="Refuse (409) a job for a queue no live worker serves. False: accept it "
        "with a warning in the job view, and it waits (for a platform that starts workers "
        "on demand).",
    )


class ApiSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Address the platform API binds.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port of the platform API.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes `loralab api` starts on one port (uvicorn workers). Rate "
        "limits, lockouts and metrics are shared; each process holds its own resident models.",
    )
    max_upload_bytes: int = Field(
        default=200_000_000, ge=1, description="Largest dataset upload accepted."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For / "
        "Forwarded headers name the client. Empty: the headers are ignored and the client is "
        "the connection's peer.",
    )


class ObservabilitySettings(BaseModel):
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address a worker's Prometheus endpoint binds."
    )
    worker_metrics_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus endpoint (GET /metrics). 0: none.",
    )
    audit_verify_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often the API re-verifies the audit chain for loralab_audit_chain_valid.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token GET /metrics of the platform API needs. Empty: /metrics "
        "answers only to loopback peers (a scraper on the same host).",
    )


class AuditSettings(BaseModel):
    anchor_key: SecretStr | None = Field(
        default=None,
        description="HMAC key that seals the audit chain's head outside the database (not the "
        "JWT secret). Empty: a random key kept in <results home>/audit-anchor.key (mode 0600).",
    )
    anchor_file: Path | None = Field(
        default=None,
        description="Where the sealed head of the audit chain is written at every append. "
        "Empty: <results home>/audit-anchor.json.",
    )


class LimitSettings(BaseModel):
    """Request limits, counted in Redis so every API process sees the same count."""

    redis_url: str | None = Field(
        default=None, description="Redis holding the counts. Empty: queue.broker_url."
    )
    prefix: str = Field(
        default="loralab:limit:", min_length=1, description="Key prefix of the counters."
    )
    login_failures_per_address: int = Field(
        default=30, ge=1, description="Failed sign-ins from one address (any user names)."
    )
    login_window_seconds: int = Field(
        default=300, ge=1, description="Window of login_failures_per_address."
    )
    password_failures_per_user: int = Field(
        default=5, ge=1, description="Wrong old passwords on POST /me/password per user."
    )
    password_window_seconds: int = Field(
        default=900, ge=1, description="Window of password_failures_per_user."
    )
    train_per_user: int = Field(default=30, ge=1, description="POST /train per user per window.")
    uploads_per_user: int = Field(
        default=30, ge=1, description="POST /datasets (uploads) per user per window."
    )
    predict_per_user: int = Field(
        default=1200, ge=1, description="POST /predict and /predict/batch per user per window."
    )
    window_seconds: int = Field(
        default=60, ge=1, description="Window of the per-user train, upload and predict limits."
    )


class LogSettings(BaseModel):
    format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one JSON object per line; text: readable lines; auto: json inside a "
        "container (/.dockerenv, /run/.containerenv or a Kubernetes service account), else text.",
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged by loralab's processes."
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
    serving: ServingSettings = Field(default_factory=ServingSettings)
    db: DbSettings = Field(default_factory=DbSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @property
    def dataset_store_dir(self) -> Path:
        """Where registered datasets live: the configured store or <results home>/datasets."""
        return self.datasets.store_dir or self.storage.results_dir / "datasets"

    @property
    def registry_card_dir(self) -> Path:
        """Model cards: the configured folder or <results home>/../data/model_registry."""
        return self.registry.card_dir or self.storage.results_dir.parent / "data" / "model_registry"

    @property
    def registry_backend(self) -> Literal["files", "database"]:
        """Where cards and stages live: ``registry.backend``, with auto resolved (database
        when ``db.url`` is set, else files)."""
        if self.registry.backend == "auto":
            return "database" if self.db.url else "files"
        return self.registry.backend

    @property
    def db_url(self) -> str:
        """The database URL: the configured one or SQLite under the results home."""
        return self.db.url or f"sqlite:///{(self.storage.results_dir / 'loralab.db').resolve()}"


def load_settings() -> Settings:
    """Read settings from the environment and .env."""
    return Settings()
