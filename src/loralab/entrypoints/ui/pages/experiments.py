"""Experiments: every run with its key metrics (admins), and 2-4 runs side by side."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui import session
from loralab.entrypoints.ui.client import ApiClient


def runs_of_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A non-admin's runs: those of their own jobs."""
    keys = ("experiment", "run_id", "state", "base_model", "model_version", "owner", "started_at")
    return [{k: j.get(k) for k in keys} for j in jobs if j.get("run_id")]


def config_differences(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Params that differ between the runs (one column per run)."""
    names = sorted({k for r in runs for k in r.get("params", {})})
    rows = {
        name: [r.get("params", {}).get(name, "") for r in runs]
        for name in names
        if len({r.get("params", {}).get(name) for r in runs}) > 1
    }
    columns = [str(r.get("run_name") or r["run_id"])[:24] for r in runs]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def metrics_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    names = sorted({k for r in runs for k in r.get("metrics", {})})
    columns = [str(r.get("run_name") or r["run_id"])[:24] for r in runs]
    rows = {n: [r.get("metrics", {}).get(n) for r in runs] for n in names}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def render(api: ApiClient) -> None:
    st.title("Experiments")
    jobs_list = api.jobs(limit=500)
    runs = api.runs() if session.is_admin() else runs_of_jobs(jobs_list)
    if not runs:
        st.info("no runs yet: start a job on the New job page")
        return
    table = pd.DataFrame(runs).drop(columns=["path"], errors="ignore")
    st.dataframe(table, hide_index=True, width="stretch")
    jobs = {j["run_id"]: j for j in jobs_list if j.get("run_id")}
    comparable = {r["run_id"]: jobs[r["run_id"]]["mlflow_run_id"] for r in runs
                  if r["run_id"] in jobs and jobs[r["run_id"]].get("mlflow_run_id")}  # fmt: skip
    st.subheader("Compare runs")
    picked = st.multiselect(
        "Runs to compare (2 to 4)", list(comparable), max_selections=4, key="compare_runs"
    )
    if len(picked) < 2:
        st.caption("pick two to four runs made by jobs to compare them side by side")
        return
    details = [api.mlflow_run(comparable[run]) for run in picked]
    st.markdown("**Metrics**")
    st.dataframe(metrics_table(details), width="stretch")
    st.markdown("**Settings that differ**")
    differences = config_differences(details)
    if differences.empty:
        st.caption("the runs have the same settings")
    else:
        st.dataframe(differences, width="stretch")
    curves = {}
    for run, detail in zip(picked, details, strict=True):
        task = detail.get("task_id")
        if task:
            series = api.job_metrics(task).get("series", {})
            points = series.get("train_loss_avg") or series.get("train_loss") or []
            curves[run] = pd.Series({p["step"]: p["value"] for p in points})
    if curves:
        st.markdown("**Train loss, overlaid**")
        st.line_chart(pd.DataFrame(curves).rename_axis("step"))
    info = api.mlflow_info()
    st.caption(f"Open the runs in the MLflow UI: {info.get('ui')}")
