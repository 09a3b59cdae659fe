"""Every request and response body of the platform API and the prediction service, in one place.

The services own the data (typed views: ``JobView``, ``UserView``, ``AuditEntry``, ...); these
models own the public shape built from them (``Model.of(view)``), and ``/openapi.json``
describes every answer with them. Error bodies are ``{"detail": "...", "error": code}``
(see ``errors.py``); ``errors(...)`` documents the codes a route answers with.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator
from typing_extensions import Self

from loralab.identity import ROLES
from loralab.jobs import states
from loralab.registry.cards import Stage

MODEL_HELP = "NAME@production, NAME@staging, NAME@VERSION or a run id; empty: the served default"
ISO_TIME = "ISO 8601 time in UTC"


class Public(BaseModel):
    """A response body, built from a service's view by attribute (``Model.of(view)``)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, view: Any) -> Self:
        return cls.model_validate(view, from_attributes=True)


class RequestBody(BaseModel):
    """A request body: unknown fields are refused (422 naming them)."""

    model_config = ConfigDict(extra="forbid")


# --- errors ------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, naming the field where there is one.")
    error: str = Field(description="A stable code: not_found, forbidden, conflict, ...")


class ValidationIssue(BaseModel):
    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class InvalidBody(BaseModel):
    """422: a refused field of the request (a list of issues) or a refused value (a sentence)."""

    detail: str | list[ValidationIssue]
    error: str | None = Field(default=None, description="invalid_input for a refused value.")


# the furthest a page may start: past it, databases overflow (SQLite: 2**63) long before any
# list is that long
MAX_OFFSET = 1_000_000_000

ERROR_TEXT = {
    400: "The body does not parse (a malformed multipart form, JSON nested too deep)",
    401: "Not signed in, or the token is invalid, expired or revoked",
    403: "Signed in, but not allowed (admins only, or a wrong old password)",
    404: "Not found, or not yours (the answer is the same)",
    409: "Conflicts with the current state",
    413: "The body or the upload is too large",
    422: "Invalid input: the detail names the field",
    429: "Too many requests: try again after Retry-After seconds",
    507: "The server's storage is full: nothing was stored",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer with these error codes."""
    return {
        code: {"model": InvalidBody if code == 422 else ErrorBody, "description": ERROR_TEXT[code]}
        for code in codes
    }


# --- sign-in and users -------------------------------------------------------------------------


class LoginRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "alice", "password": "a long passphrase"}]},
    )
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(RequestBody):
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class NewUser(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"username": "bob", "password": "a long passphrase", "role": "user"}]
        },
    )
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: Literal["admin", "user"] = "user"


class UserChange(RequestBody):
    """One change per request: each is its own audited step, so a refused second change can
    never leave the first one applied."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"disabled": True}]})
    role: Literal["admin", "user"] | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _one_change(self) -> UserChange:
        if (self.role is None) == (self.disabled is None):
            raise ValueError("give exactly one of role, disabled")
        return self


class PasswordReset(RequestBody):
    new_password: str = Field(min_length=1, max_length=256)


class UserPublic(Public):
    id: int
    username: str
    role: str = Field(json_schema_extra={"enum": list(ROLES)})
    disabled: bool
    created_at: str | None = Field(description=ISO_TIME)
    updated_at: str | None = Field(description=ISO_TIME)


class UserList(RootModel[list[UserPublic]]):
    """A list of UserPublic."""


class TokenResponse(Public):
    access_token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="Seconds the token is valid for.")
    user: UserPublic


class PasswordChanged(Public):
    changed: bool


class OwnPasswordChanged(PasswordChanged):
    detail: str


# --- jobs --------------------------------------------------------------------------------------


class JobStepPublic(Public):
    name: str = Field(json_schema_extra={"enum": list(states.PIPELINE)})
    status: states.StepStatus


class JobProgressPublic(Public):
    """As the worker last wrote it; null before training starts."""

    epoch: float | None = Field(default=None, description="Null when max_steps caps training.")
    step: int | None = None
    total_steps: int | None = None
    percent: float | None = None
    loss: float | None = Field(default=None, description="The latest training loss.")


class JobPublic(Public):
    """A training job as its owner (or an admin) sees it."""

    task_id: str
    owner: str | None
    state: str = Field(
        json_schema_extra={"enum": [*states.PIPELINE, states.FAILED, states.CANCELLED]}
    )
    steps: list[JobStepPublic] = Field(description="The pipeline as a stepper, in order.")
    progress: JobProgressPublic
    error: str | None = Field(description="Why the job failed or was cancelled.")
    cancel_requested: bool
    experiment: str | None
    base_model: str
    model_name: str | None
    run_id: str | None = Field(description="The run folder's id (results/<experiment>/<run_id>).")
    mlflow_run_id: str | None
    model_version: str | None = Field(description="The registered model, NAME@VERSION.")
    queue: str = Field(description="cpu, cuda or mps.")
    attempts: int
    created_at: str | None = Field(description=ISO_TIME)
    started_at: str | None = Field(description=ISO_TIME)
    finished_at: str | None = Field(description=ISO_TIME)
    queue_position: int | None = Field(description="1: next to start; null unless queued.")
    dispatch: Literal["sent", "deferred"] | None = Field(
        default=None,
        description="Queued jobs: sent (the broker has it) or deferred (the broker was down: "
        "the recovery sweep sends it when it is back); null otherwise.",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Said at submission, e.g. that the base model does not read the data's "
        "language (a request with allow_language_mismatch).",
    )


class JobList(RootModel[list[JobPublic]]):
    """A list of JobPublic."""


# --- experiments -------------------------------------------------------------------------------


class RunSummary(Public):
    experiment: str
    run_id: str
    status: str
    base_model: str
    accuracy: float | None
    macro_f1: float | None
    started: str = Field(description="Local start time, YYYY-MM-DD HH:MM; empty if unknown.")
    path: None = Field(default=None, description="Always null: server paths are not shown.")

    @classmethod
    def of(cls, view: Any) -> Self:
        fields = {name: getattr(view, name) for name in cls.model_fields if name != "path"}
        return cls.model_validate(fields)


class RunList(RootModel[list[RunSummary]]):
    """A list of RunSummary."""


class MlflowRunPublic(Public):
    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None = Field(description="Milliseconds since the epoch.")
    end_time: int | None = Field(description="Milliseconds since the epoch.")
    params: dict[str, str]
    metrics: dict[str, float] = Field(description="The latest value of each metric.")
    tags: dict[str, str]
    artifacts: list[str]
    task_id: str | None = Field(description="The job that made this run.")


class MlflowInfo(Public):
    tracking_uri: str
    ui: str


# --- datasets ----------------------------------------------------------------------------------


class DatasetFields(Public):
    name: str
    version: str
    ref: str = Field(description="NAME@VERSION: what POST /train takes as train_file.")
    fingerprint: str
    rows: int
    label_counts: dict[str, int]
    registered_by: str
    registered_at: float = Field(description="Seconds since the epoch.")
    text_column: str
    label_column: str
    report: dict[str, Any] = Field(description="The validation report of the data.")


class DatasetVersionPublic(DatasetFields):
    owner: str | None = Field(description="The uploader; null: registered by an operator, shared.")


class DatasetList(RootModel[list[DatasetVersionPublic]]):
    """A list of DatasetVersionPublic."""


class DatasetUploaded(DatasetFields):
    created: bool = Field(description="False: this content already was this version.")
    warnings: int = Field(description="How many warnings validation reported.")


# --- models ------------------------------------------------------------------------------------


class DatasetRefPublic(Public):
    name: str
    version: str | None
    fingerprint: str | None


class LoraPublic(Public):
    r: int
    alpha: int
    dropout: float
    target_modules: list[str] | None


class CardPublic(Public):
    """A registered model version's card (without its embedding)."""

    name: str
    version: str
    ref: str = Field(description="NAME@VERSION")
    run_id: str
    base_model: str
    language: str = Field(description="The language of the data it was trained on.")
    base_languages: list[str] = Field(description="The languages the base model reads.")
    task: str
    description: str
    labels: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]
    dataset: DatasetRefPublic
    lora: LoraPublic
    training: dict[str, Any]
    created_by: str
    created_at: float = Field(description="Seconds since the epoch.")
    stage: Stage


class SearchPage(Public):
    items: list[CardPublic]
    total: int
    offset: int
    limit: int


class RecommendRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "English product review sentiment"}]},
    )
    text: str | None = Field(default=None, max_length=1000, description="What you need.")
    model: str | None = Field(default=None, max_length=200, description="Models like NAME@V.")
    dataset: str | None = Field(default=None, max_length=200, description="A registered dataset.")
    limit: int = Field(default=5, ge=1, le=100)

    @model_validator(mode="after")
    def _one_question(self) -> RecommendRequest:
        if sum(x is not None for x in (self.text, self.model, self.dataset)) != 1:
            raise ValueError("give exactly one of text, model, dataset")
        return self


class Recommendation(Public):
    model: CardPublic
    score: float
    reasons: list[str]


class RecommendResponse(Public):
    results: list[Recommendation]
    starting_point: dict[str, Any] | None = Field(
        description="For a dataset: the training settings of the best run on it."
    )


class TransitionRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "demo@2", "stage": "Production"}]},
    )
    model: str = Field(max_length=200, description="NAME@VERSION")
    stage: Literal["Staging", "Production", "Archived"]
    reason: str = Field(default="", max_length=1000)
    force: bool = Field(default=False, description="Override the promotion gate (needs reason).")


class TransitionResponse(Public):
    model: CardPublic
    from_stage: str | None = Field(alias="from", description="The stage it left.")
    to: str
    archived: list[str] = Field(description="Versions archived to make room (NAME@VERSION).")


# --- audit -------------------------------------------------------------------------------------


class AuditRecordPublic(Public):
    id: int
    at: str = Field(description=ISO_TIME + ", with microseconds")
    username: str | None
    role: str | None
    action: str
    target: str | None
    outcome: str = Field(json_schema_extra={"enum": ["allowed", "denied", "failed"]})
    client: str | None
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(Public):
    items: list[AuditRecordPublic]
    total: int = Field(description="How many records match in all.")
    offset: int
    limit: int


# --- prediction and health ---------------------------------------------------------------------


class PredictRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "Great film, loved it!"}]},
    )
    text: str = Field(min_length=1, description="The text to classify.")
    model: str | None = Field(default=None, max_length=200, description=MODEL_HELP)


class BatchRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"texts": ["Great film!", "Dull and too long."]}]},
    )
    texts: list[str] = Field(description="Texts to classify (at most serving.max_batch_texts).")
    model: str | None = Field(default=None, max_length=200, description=MODEL_HELP)


class PredictResponse(Public):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "label": 1,
                    "label_name": "positive",
                    "probability": 0.9983,
                    "latency_ms": 4.2,
                    "base_model": "minilm-l6",
                    "language": "English",
                    "model_version": "demo@1",
                }
            ]
        }
    )
    label: int
    label_name: str
    probability: float
    latency_ms: float = Field(description="Server-side time of the model work, in ms.")
    base_model: str
    language: str
    model_version: str
    truncated: bool = Field(default=False, description="The text was cut to the limit.")


class BatchResponse(Public):
    predictions: list[PredictResponse]
    latency_ms: float
    count: int


class StreamedPrediction(PredictResponse):
    """One line of a streamed ``POST /predict/batch`` (``Accept: application/x-ndjson``)."""

    index: int = Field(description="Position of the text in the request's texts.")


class StreamError(Public):
    """The last line of a streamed batch that failed part-way (the status was already 200)."""

    index: int = Field(description="The first text of the request left unanswered.")
    error: str


class ServingStatus(Public):
    """The prediction service, for anyone: up, and whether a default model is loaded (which
    one, and everything else, is in ``GET /health/details`` for monitoring clients)."""

    status: Literal["ok", "no model loaded"]
    model_loaded: bool


class ModelHealth(Public):
    """The prediction service: the default model it serves and what it has loaded."""

    status: str = Field(description="ok, or why no model is loaded.")
    model_loaded: bool
    model_version: str | None
    stage: str | None
    base_model: str | None
    language: str | None
    labels: list[str]
    device: str
    mode: str
    loaded: list[str] = Field(description="Models in memory.")
    backend: str | None = Field(
        default=None,
        description="What runs the default model: onnx (ONNX Runtime, merged mode), pytorch, "
        "or empty when it is served as an adapter.",
    )
    onnx_note: str | None = Field(
        default=None, description="Why the default model is not on ONNX Runtime, when it is not."
    )
    uptime_s: float


class HealthResponse(Public):
    """Readiness, for anyone: no versions, no error texts."""

    status: Literal["ok", "degraded"] = Field(
        description="ok when the database and the broker both answer."
    )
    database: Literal["ok", "down"]
    broker: Literal["ok", "down"]


class LiveResponse(Public):
    """Liveness: the process answers."""

    status: Literal["ok"]


# --- web UI support (routes/ui_support.py) -----------------------------------------------------


class CatalogModel(Public):
    name: str = Field(description="What to pass as base_model.")
    hub_id: str | None = Field(description="Hub id it loads from; None: a local folder.")
    language: str | None
    description: str
    offline: bool = Field(description="Loads without the network (packaged or local).")


class CatalogResponse(Public):
    items: list[CatalogModel]
    default: str = Field(description="The base model a job gets when it names none.")


class RowChangePublic(Public):
    kind: str = Field(description="added, removed or relabelled")
    text: str
    row_old: int | None
    row_new: int | None
    label_old: str | None
    label_new: str | None


class DatasetDiffPublic(Public):
    old: str
    new: str
    added: int
    removed: int
    relabelled: int
    unchanged: int
    changes: list[RowChangePublic] = Field(description="The first changed rows (at most 200).")


class DatasetPlots(Public):
    ref: str
    plots: dict[str, str] = Field(
        description="Plot name -> base64 of its PNG (the plots of `loralab data analyze`)."
    )


class StepEstimateRequest(RequestBody):
    train_file: str = Field(max_length=200, description="A visible dataset: NAME@VERSION.")
    validation_split: float | None = Field(default=None, gt=0.0, lt=0.5)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    epochs: float | None = Field(default=None, gt=0.0, le=1000.0)
    max_steps: int | None = Field(default=None, ge=1)


class StepEstimate(Public):
    rows: int
    train_rows: int = Field(description="Rows left for training after the validation split.")
    batch_size: int
    epochs: float
    steps_per_epoch: int
    steps: int = Field(description="Optimiser steps the job will run (max_steps wins).")


class StageChangePublic(Public):
    version: str
    from_stage: str | None
    to_stage: str
    by: str
    at: float = Field(description="Seconds since the epoch.")
    reason: str


class StageHistory(Public):
    model: str
    changes: list[StageChangePublic] = Field(description="Oldest first.")


class AuditVerifyResponse(Public):
    ok: bool
    checked: int = Field(description="Records read (intact ones, when the chain is broken).")
    first_bad_id: int | None
    problem: str | None
