"""Experiments: a sortable table of runs, and 2-4 runs side by side (curves overlaid, settings
with the differences highlighted, per-class reports, confusion matrices, links to MLflow)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui import session
from loralab.entrypoints.ui.client import ApiClient

DIFFERS = "background-color: #fff3bf; font-weight: 600"


def _duration(job: dict[str, Any]) -> float | None:
    """Minutes from start to finish (None while it runs or before it starts)."""
    start, end = job.get("started_at"), job.get("finished_at")
    if not start or not end:
        return None
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return round(seconds / 60.0, 2)


def runs_table(
    jobs: list[dict[str, Any]], cards: list[dict[str, Any]], admin_runs: list[dict[str, Any]]
) -> pd.DataFrame:
    """One row per run: who, base model, dataset version, duration, metrics (from the run's
    model card, or for admins the run list). Admins also see runs no job made (the CLI's)."""
    by_run = {c.get("run_id"): c for c in cards}
    scores = {r["run_id"]: r for r in admin_runs}
    rows = []
    for job in jobs:
        run = job.get("run_id")
        if not run:
            continue
        card = by_run.get(run) or by_run.get(job.get("mlflow_run_id")) or {}
        summary = scores.get(run) or {}
        metrics = card.get("metrics") or {}
        dataset = card.get("dataset") or {}
        rows.append(
            {
                "run": run,
                "state": job.get("state"),
                "who": job.get("owner"),
                "base model": job.get("base_model"),
                "dataset": f"{dataset['name']}@{dataset['version']}" if dataset else None,
                "model": job.get("model_version"),
                "accuracy": metrics.get("accuracy", summary.get("accuracy")),
                "macro F1": metrics.get("macro_f1", summary.get("macro_f1")),
                "minutes": _duration(job),
                "started": job.get("started_at"),
            }
        )
    seen = {r["run"] for r in rows}
    rows += [
        {"run": r["run_id"], "state": r.get("status"), "who": "(command line)",
         "base model": r.get("base_model"), "dataset": None, "model": None,
         "accuracy": r.get("accuracy"), "macro F1": r.get("macro_f1"), "minutes": None,
         "started": r.get("started")}
        for r in admin_runs
        if r["run_id"] not in seen
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _names(runs: list[dict[str, Any]]) -> list[str]:
    return [str(r.get("run_name") or r["run_id"])[:24] for r in runs]


def settings_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Every param of the runs (one column per run), the differing ones first."""
    names = sorted({k for r in runs for k in r.get("params", {})})
    rows = {name: [r.get("params", {}).get(name, "") for r in runs] for name in names}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=_names(runs))
    differs = frame.nunique(axis=1) > 1
    return pd.concat([frame[differs], frame[~differs]])


def config_differences(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Only the params that differ between the runs."""
    frame = settings_table(runs)
    return frame[frame.nunique(axis=1) > 1]


def highlighted(frame: pd.DataFrame) -> Any:
    """The settings with the rows that differ between runs highlighted."""

    def mark(row: pd.Series) -> list[str]:
        return [DIFFERS if row.nunique() > 1 else ""] * len(row)

    return frame.style.apply(mark, axis=1)


def metrics_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    names = sorted({k for r in runs for k in r.get("metrics", {})})
    rows = {n: [r.get("metrics", {}).get(n) for r in runs] for n in names}
    return pd.DataFrame.from_dict(rows, orient="index", columns=_names(runs))


def sorted_table(table: pd.DataFrame) -> pd.DataFrame:
    left, right = st.columns([3, 1])
    column = left.selectbox("Sort runs by", list(table.columns), index=9, key="runs_sort")
    descending = right.toggle("Descending", value=True, key="runs_desc")
    return table.sort_values(column, ascending=not descending, na_position="last")


def reports(api: ApiClient, picked: list[str], details: list[dict[str, Any]]) -> None:
    """Per-class report and confusion matrix of each compared run, side by side."""
    st.markdown("**Per-class report and confusion matrix**")
    for column, run, detail in zip(st.columns(len(picked)), picked, details, strict=True):
        column.caption(run)
        task = detail.get("task_id")
        report = api.job_report(task) if task else {}
        if report.get("per_class"):
            column.dataframe(pd.DataFrame(report["per_class"]).T.round(3), width="stretch")
        else:
            column.info("no per-class report")
        if report.get("confusion_matrix_png"):
            column.image(base64.b64decode(report["confusion_matrix_png"]), width="stretch")


def curves(api: ApiClient, picked: list[str], details: list[dict[str, Any]]) -> None:
    found: dict[str, pd.Series] = {}
    for run, detail in zip(picked, details, strict=True):
        if task := detail.get("task_id"):
            series = api.job_metrics(task).get("series", {})
            points = series.get("train_loss") or series.get("train_loss_avg") or []
            label = f"run {len(found) + 1} ({run.rsplit('-', 1)[-1]})"  # not date-like
            found[label] = pd.Series({p["step"]: p["value"] for p in points})
    if found:
        st.markdown("**Train loss, overlaid**")
        st.line_chart(pd.DataFrame(found).rename_axis("step"))


def mlflow_links(api: ApiClient, picked: list[str], details: list[dict[str, Any]]) -> None:
    ui = str(api.mlflow_info().get("ui") or "").rstrip("/")
    if not ui:
        return
    links = [
        f"[{run}]({ui}/#/experiments/{d['experiment_id']}/runs/{d['run_id']})"
        for run, d in zip(picked, details, strict=True)
    ]
    st.markdown("Open in the MLflow UI: " + " · ".join(links))


def render(api: ApiClient) -> None:
    st.title("Experiments")
    jobs = api.jobs(limit=500)
    cards = api.search_models(limit=100).get("items", [])
    admin_runs = api.runs() if session.is_admin() else []
    table = runs_table(jobs, cards, admin_runs)
    if table.empty:
        st.info("no runs yet: start a job on the New job page")
        return
    st.dataframe(sorted_table(table), hide_index=True, width="stretch")
    comparable = {j["run_id"]: j["mlflow_run_id"] for j in jobs
                  if j.get("run_id") and j.get("mlflow_run_id")}  # fmt: skip
    st.subheader("Compare runs")
    picked = st.multiselect(
        "Runs to compare (2 to 4)", list(comparable), max_selections=4, key="compare_runs"
    )
    if len(picked) < 2:
        st.caption("pick two to four runs made by jobs to compare them side by side")
        return
    details = [api.mlflow_run(comparable[run]) for run in picked]
    curves(api, picked, details)
    st.markdown("**Metrics**")
    st.dataframe(metrics_table(details), width="stretch")
    st.markdown("**Settings** (the ones that differ first, highlighted)")
    st.dataframe(highlighted(settings_table(details)), width="stretch")
    reports(api, picked, details)
    mlflow_links(api, picked, details)
