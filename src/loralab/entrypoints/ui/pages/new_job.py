"""New training job: a form built from the API's TrainRequest schema (help texts, choices)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from loralab.entrypoints.ui.client import ApiClient, ApiError
from loralab.entrypoints.ui.pages.datasets import upload_form
from loralab.entrypoints.ui.pages.jobs import WATCH_KEY

MAIN = ("experiment", "base_model", "model_name", "epochs", "max_steps", "learning_rate")
LORA = ("lora_r", "lora_alpha", "lora_dropout")
ADVANCED = (
    "batch_size", "max_length", "validation_split", "weight_decay", "warmup_ratio", "seed",
    "eval_steps", "metric_for_best", "early_stopping_patience", "device", "precision",
)  # fmt: skip


def train_fields(api: ApiClient) -> dict[str, Any]:
    """The TrainRequest properties of the API's OpenAPI document."""
    schemas = api.openapi().get("components", {}).get("schemas", {})
    props: dict[str, Any] = schemas.get("TrainRequest", {}).get("properties", {})
    return props


def _choices(spec: dict[str, Any]) -> list[str]:
    for option in spec.get("anyOf", [spec]):
        if "enum" in option:
            return [str(v) for v in option["enum"]]
    return []


def _kind(spec: dict[str, Any]) -> str:
    kinds = {o.get("type") for o in spec.get("anyOf", [spec])} - {"null", None}
    return next(iter(kinds)) if len(kinds) == 1 else "string"


def field_input(name: str, spec: dict[str, Any], error: str | None) -> Any:
    """One input for one TrainRequest field; empty means 'the server's default'."""
    label = name.replace("_", " ")
    help_text = spec.get("description") or f"{label}; empty: the default"
    choices = _choices(spec)
    if choices:
        value: Any = st.selectbox(label, ["(default)", *choices], key=f"job_{name}", help=help_text)
        value = None if value == "(default)" else value
    else:
        raw = st.text_input(label, key=f"job_{name}", help=help_text, placeholder="default")
        value = _parse(raw, _kind(spec))
    if error:
        st.error(error)
    return value


def _parse(raw: str, kind: str) -> Any:
    raw = raw.strip()
    if not raw:
        return None
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw  # the API names the field in its refusal
    return raw


def base_model_input(api: ApiClient, error: str | None) -> str:
    """The base model, picked from the API's catalog (catalog models, then local folders)."""
    catalog = api.catalog()
    items = catalog.get("items", [])
    names = [m["name"] for m in items]
    about = {m["name"]: m for m in items}
    default = catalog.get("default")
    index = names.index(default) if default in names else 0

    def label(name: str) -> str:
        model = about[name]
        where = model.get("language") or "local"
        return f"{name} ({where}{'' if model.get('offline') else ', needs the hub or a cache'})"

    picked = st.selectbox(
        "base model", names, index=index, key="job_base_model", format_func=label,
        help="Catalog models and the model folders on the server",
    )  # fmt: skip
    if error:
        st.error(error)
    return str(picked)


def estimate_text(api: ApiClient, values: dict[str, Any]) -> str:
    """'about N optimiser steps (...)', or why there is no estimate."""
    keys = ("train_file", "validation_split", "batch_size", "epochs", "max_steps")
    body = {k: values[k] for k in keys if values.get(k) is not None}
    try:
        plan = api.estimate(body)
    except ApiError as err:
        return f"no step estimate: {err}"
    return (
        f"about {plan['steps']} optimiser steps ({plan['train_rows']} of {plan['rows']} rows "
        f"train, batch {plan['batch_size']}, {plan['steps_per_epoch']} steps per epoch, "
        f"{plan['epochs']:g} epochs)"
    )


def _dataset_panel(api: ApiClient, ref: str) -> bool:
    """The dataset's validation report; False when it has errors (they block submit)."""
    version = api.dataset(ref)
    report = version.get("report") or {}
    errors, warnings = report.get("errors") or [], report.get("warnings") or []
    st.caption(f"{version['ref']}: {version['rows']} rows, labels {version['label_counts']}")
    for problem in errors:
        st.error(f"dataset error: {problem}")
    for warning in warnings:
        st.warning(f"dataset warning: {warning}")
    return not errors


def render(api: ApiClient) -> None:
    st.title("New training job")
    with st.expander("Upload a new dataset"):
        uploaded = upload_form(api)
    if uploaded:
        st.session_state["job_train_file"] = uploaded
    refs = [d["ref"] for d in api.datasets()]
    if not refs:
        st.info("no dataset yet: upload one above")
        return
    fields = train_fields(api)
    refused: dict[str, str] = st.session_state.get("job_refused", {})
    dataset = st.selectbox("Dataset (NAME@VERSION)", refs, key="job_train_file")
    usable = _dataset_panel(api, dataset)
    if refused.get("train_file"):
        st.error(refused["train_file"])
    values: dict[str, Any] = {"train_file": dataset}
    for name in MAIN:
        if name == "base_model":
            values[name] = base_model_input(api, refused.get(name))
            continue
        values[name] = field_input(name, fields.get(name, {}), refused.get(name))
    with st.expander("LoRA settings"):
        for name in LORA:
            values[name] = field_input(name, fields.get(name, {}), refused.get(name))
    with st.expander("Advanced settings"):
        for name in ADVANCED:
            values[name] = field_input(name, fields.get(name, {}), refused.get(name))
    mismatch = fields.get("allow_language_mismatch")
    if mismatch and st.checkbox(
        "Train even if the base model does not read the data's language",
        key="job_allow_language_mismatch", help=mismatch.get("description"),
    ):  # fmt: skip
        values["allow_language_mismatch"] = True
    if refused.get(""):
        st.error(refused[""])
    st.info(estimate_text(api, values))
    if not st.button("Start training", type="primary", disabled=not usable):
        return
    body = {k: v for k, v in values.items() if v is not None}
    try:
        job = api.submit_job(body)
    except ApiError as err:
        field = err.field if err.field in values else ""
        st.session_state["job_refused"] = {field: str(err)}
        st.rerun()
    st.session_state["job_refused"] = {}
    st.session_state[WATCH_KEY] = job["task_id"]
    st.success(f"job {job['task_id']} queued (position {job.get('queue_position')})")
