"""Datasets: versions with row and label counts, validation report, upload a new version."""

from __future__ import annotations

import base64

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui.client import ApiClient, ApiError


def upload_form(api: ApiClient) -> str | None:
    """The upload form; the new version's ref once one is registered."""
    with st.form("upload_dataset"):
        name = st.text_input("Dataset name", key="upload_name", help="e.g. reviews")
        file = st.file_uploader("File (.csv, .tsv, .jsonl or .parquet)", key="upload_file")
        left, right = st.columns(2)
        text_column = left.text_input("Text column", value="text", key="upload_text")
        label_column = right.text_input("Label column", value="label", key="upload_label")
        pressed = st.form_submit_button("Upload")
    if not pressed:
        return None
    if not name or file is None:
        st.error("give the dataset a name and choose a file")
        return None
    try:
        done = api.upload_dataset(name, file.name, file.getvalue(), text_column, label_column)
    except ApiError as err:
        st.error(f"upload refused: {err}")
        return None
    verb = "registered as" if done.get("created") else "already registered as"
    st.success(f"{verb} {done['ref']} ({done['rows']} rows, {done.get('warnings', 0)} warnings)")
    return str(done["ref"])


def diff_panel(api: ApiClient, ref: str, refs: list[str]) -> None:
    """Rows added, removed and relabelled from another version to this one (the API's diff)."""
    left, right = st.columns(2)
    other = left.selectbox("Compare with", ["(none)", *refs], key="dataset_other")
    typed = right.text_input("or another version", key="dataset_other_ref",
                             placeholder="NAME@VERSION, e.g. reviews@1")  # fmt: skip
    base = typed.strip() or (other if other != "(none)" else "")
    if not base:
        return
    try:
        diff = api.dataset_diff(ref, base)
    except ApiError as err:
        st.error(f"no diff: {err}")
        return
    cols = st.columns(4)
    for column, key in zip(cols, ("added", "removed", "relabelled", "unchanged"), strict=True):
        column.metric(key, diff[key])
    st.caption(f"{diff['old']} → {diff['new']}")
    if diff["changes"]:
        st.dataframe(pd.DataFrame(diff["changes"]), hide_index=True, width="stretch")


def plots_panel(api: ApiClient, ref: str) -> None:
    """The analysis plots (computed once per version by the API, on request)."""
    if not st.toggle("Show the analysis plots", key="dataset_plots"):
        return
    found = api.dataset_plots(ref).get("plots", {})
    columns = st.columns(2)
    for i, (name, png) in enumerate(found.items()):
        columns[i % 2].image(base64.b64decode(png), caption=name.replace("_", " "))


def render(api: ApiClient) -> None:
    st.title("Datasets")
    versions = api.datasets()
    if versions:
        rows = [
            {"ref": v["ref"], "rows": v["rows"], "labels": len(v["label_counts"]),
             "owner": v.get("owner") or "shared", "by": v.get("registered_by")}
            for v in versions
        ]  # fmt: skip
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        refs = [v["ref"] for v in versions]
        ref = st.selectbox("Version", refs, key="dataset_ref")
        version = next(v for v in versions if v["ref"] == ref)
        st.bar_chart(pd.Series(version["label_counts"], name="rows"))
        report = version.get("report") or {}
        for problem in report.get("errors") or []:
            st.error(problem)
        for warning in report.get("warnings") or []:
            st.warning(warning)
        with st.expander("Validation report"):
            st.json(report)
        plots_panel(api, ref)
        st.subheader("Diff")
        diff_panel(api, ref, refs)
    else:
        st.info("no dataset yet: upload one below")
    st.subheader("Upload a new version")
    upload_form(api)
