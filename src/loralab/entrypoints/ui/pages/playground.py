"""Playground: classify texts with a model, see labels, probabilities and latency."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui.client import ApiClient, ApiError

LOW_CONFIDENCE = 0.6


def result_rows(texts: list[str], answer: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {
            "text": text[:80],
            "label": p["label_name"],
            "probability": p["probability"],
            "confidence": "low" if p["probability"] < LOW_CONFIDENCE else "ok",
            "model": p["model_version"],
        }
        for text, p in zip(texts, answer["predictions"], strict=True)
    ]
    return pd.DataFrame(rows)


def render(api: ApiClient) -> None:
    st.title("Playground")
    model = st.text_input(
        "Model", key="play_model", placeholder="NAME@production, NAME@VERSION or a run id",
        help="Empty: the model the API serves by default",
    )  # fmt: skip
    raw = st.text_area("Texts, one per line", key="play_texts", height=150)
    if not st.button("Classify", type="primary"):
        return
    texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        st.error("type at least one text")
        return
    try:
        answer = api.predict(texts, model.strip() or None)
    except ApiError as err:
        st.error(f"no prediction: {err}")
        return
    st.caption(f"{answer['count']} texts in {answer['latency_ms']:.1f} ms")
    st.dataframe(
        result_rows(texts, answer),
        hide_index=True,
        width="stretch",
        column_config={
            "probability": st.column_config.ProgressColumn(
                "probability", min_value=0.0, max_value=1.0, format="%.3f"
            )
        },
    )
