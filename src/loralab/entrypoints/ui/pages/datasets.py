"""Datasets: versions with row and label counts, validation report, upload a new version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui.client import ApiClient, ApiError


def upload_form(api: ApiClient) -> None:
    with st.form("upload_dataset"):
        name = st.text_input("Dataset name", key="upload_name", help="e.g. reviews")
        file = st.file_uploader("File (.csv, .tsv, .jsonl or .parquet)", key="upload_file")
        left, right = st.columns(2)
        text_column = left.text_input("Text column", value="text", key="upload_text")
        label_column = right.text_input("Label column", value="label", key="upload_label")
        pressed = st.form_submit_button("Upload")
    if not pressed:
        return
    if not name or file is None:
        st.error("give the dataset a name and choose a file")
        return
    try:
        done = api.upload_dataset(name, file.name, file.getvalue(), text_column, label_column)
    except ApiError as err:
        st.error(f"upload refused: {err}")
        return
    verb = "registered as" if done.get("created") else "already registered as"
    st.success(f"{verb} {done['ref']} ({done['rows']} rows, {done.get('warnings', 0)} warnings)")


def label_diff(old: dict[str, int], new: dict[str, int]) -> pd.DataFrame:
    labels = sorted(set(old) | set(new))
    rows = [{"label": x, "before": old.get(x, 0), "after": new.get(x, 0)} for x in labels]
    frame = pd.DataFrame(rows)
    frame["change"] = frame["after"] - frame["before"]
    return frame


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
        other = st.selectbox("Compare with", ["(none)", *refs], key="dataset_other")
        if other != "(none)":
            before = next(v for v in versions if v["ref"] == other)
            st.caption(f"rows: {before['rows']} → {version['rows']}")
            st.dataframe(
                label_diff(before["label_counts"], version["label_counts"]), hide_index=True
            )
    else:
        st.info("no dataset yet: upload one below")
    st.subheader("Upload a new version")
    upload_form(api)
