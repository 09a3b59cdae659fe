"""Job monitor: the stepper, live curves and log while a job runs, cancel; and a job list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui import session
from loralab.entrypoints.ui.client import ApiClient, ApiError

TERMINAL = {"succeeded", "failed", "cancelled"}
STATES = ["queued", "validating", "training", "evaluating", "registering", *sorted(TERMINAL)]
POLL_SECONDS = 2.0
WATCH_KEY = "watch_task"  # set by the New job page: the job to open here next
# plain symbols: every font has them (emoji need a colour-emoji font the server may lack)
MARKS = {"done": "✓", "current": "▶", "failed": "✗", "cancelled": "⊘", "pending": "○"}


def stepper_text(job: dict[str, Any]) -> str:
    """The pipeline as one line: ✓ queued → ▶ training → ○ ..."""
    parts = [f"{MARKS.get(s['status'], '○')} {s['name']}" for s in job.get("steps", [])]
    return " → ".join(parts)


def eta_text(job: dict[str, Any]) -> str | None:
    """Time left from progress so far, or None when it cannot be estimated yet."""
    progress, started = job.get("progress") or {}, job.get("started_at")
    percent = progress.get("percent")
    if not started or not percent or job["state"] in TERMINAL:
        return None
    elapsed = (
        datetime.now(datetime.fromisoformat(started).tzinfo) - datetime.fromisoformat(started)
    ).total_seconds()
    left = max(0.0, elapsed * (100.0 - float(percent)) / float(percent))
    return f"about {int(left // 60)} min {int(left % 60)} s left"


def curves(metrics: dict[str, Any]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Train-loss and eval-metric curves as step-indexed frames (None: nothing logged yet)."""
    series = metrics.get("series") or {}

    def frame(names: tuple[str, ...]) -> pd.DataFrame | None:
        columns = {
            n: pd.Series({p["step"]: p["value"] for p in series[n]}) for n in names if series.get(n)
        }
        return pd.DataFrame(columns).rename_axis("step") if columns else None

    return frame(("train_loss", "train_loss_avg")), frame(
        ("val_loss", "val_accuracy", "val_macro_f1")
    )


def show_job(api: ApiClient, task_id: str) -> dict[str, Any]:
    job = api.job(task_id)
    st.subheader(f"Job {job['task_id']}")
    st.markdown(stepper_text(job))
    cols = st.columns(4)
    cols[0].metric("State", job["state"])
    cols[1].metric("Queue position", job.get("queue_position") or "–")
    cols[2].metric("Attempt", job.get("attempts", 0))
    progress = job.get("progress") or {}
    cols[3].metric("Step", f"{progress.get('step') or 0} / {progress.get('total_steps') or '?'}")
    if progress.get("percent") is not None:
        st.progress(min(1.0, float(progress["percent"]) / 100.0))
    if eta := eta_text(job):
        st.caption(eta)
    for warning in job.get("warnings") or []:  # said at submission, e.g. a language mismatch
        st.warning(warning)
    if job["state"] == "failed":
        st.error(f"the job failed: {job.get('error') or 'no reason recorded'}")
    elif job["state"] == "cancelled":
        st.warning(f"the job was cancelled: {job.get('error') or ''}")
    elif job["state"] == "succeeded":
        st.success(f"done: registered as {job.get('model_version')}")
    loss, evals = curves(api.job_metrics(task_id))
    left, right = st.columns(2)
    left.caption("Train loss")
    left.line_chart(loss) if loss is not None else left.info("no train loss logged yet")
    right.caption("Evaluation")
    right.line_chart(evals) if evals is not None else right.info("no evaluation yet")
    log = api.job_logs(task_id, tail=30)
    with st.expander("Log (last lines)", expanded=job["state"] not in TERMINAL):
        st.code("\n".join(log["lines"]) or "(empty)", language=None)
    return job


def cancel_box(api: ApiClient, job: dict[str, Any]) -> None:
    if job["state"] in TERMINAL:
        return
    confirm = st.checkbox("Yes, cancel this job", key="cancel_confirm")
    if st.button("Cancel job", disabled=not confirm):
        try:
            api.cancel_job(job["task_id"])
            st.success("cancel requested")
        except ApiError as err:
            st.error(str(err))


def job_list(api: ApiClient) -> None:
    st.subheader("Jobs")
    left, right = st.columns(2)
    state = left.selectbox("State", ["(any)", *STATES], key="jobs_state")
    admin = session.is_admin()
    user = right.text_input("User (empty: everyone)", key="jobs_user") if admin else None
    chosen = None if state == "(any)" else state
    jobs = api.jobs(state=chosen, user=user or None, everyone=admin and not user)
    if not jobs:
        st.info("no jobs yet: start one on the New job page")
        return
    rows = [
        {
            k: j.get(k)
            for k in ("task_id", "owner", "state", "base_model", "model_version", "created_at")
        }
        for j in jobs
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def render(api: ApiClient) -> None:
    st.title("Job monitor")
    if watch := st.session_state.pop(WATCH_KEY, None):  # a job just submitted: watch it
        st.session_state["monitor_task"] = watch  # set before the field exists: it shows it
        st.session_state["monitor_live"] = True
    task_id = st.text_input("Job id", key="monitor_task", help="Paste a job id, or pick one below")
    if task_id.strip():
        live = st.session_state.get("monitor_live", True)

        @st.fragment(run_every=POLL_SECONDS if live else None)
        def watch() -> None:
            job = session.guarded(lambda: show_job(api, task_id.strip()))
            terminal = job is None or job["state"] in TERMINAL
            if terminal == live:  # the job ended (or restarted): redraw without/with polling
                st.session_state["monitor_live"] = not terminal
                st.rerun()
            if job is not None:
                cancel_box(api, job)

        watch()
    job_list(api)
