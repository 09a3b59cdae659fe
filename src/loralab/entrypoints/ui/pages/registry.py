"""Model registry: search with filters, recommendations with reasons, cards, stage changes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui import session
from loralab.entrypoints.ui.client import ApiClient, ApiError

STAGES = ["(any)", "None", "Staging", "Production", "Archived"]


def card_row(card: dict[str, Any]) -> dict[str, Any]:
    """One line of the search results: name, stage, base model, language, metrics."""
    metrics = {k: round(float(v), 4) for k, v in card.get("metrics", {}).items()}
    keys = {"model": "ref", "stage": "stage", "base model": "base_model", "language": "language"}
    return {label: card.get(key) for label, key in keys.items()} | metrics


def card_view(card: dict[str, Any]) -> None:
    st.subheader(card["ref"])
    st.caption(card.get("description") or "")
    cols = st.columns(3)
    cols[0].metric("Stage", card.get("stage") or "None")
    cols[1].metric("Base model", card.get("base_model", ""))
    cols[2].metric("Language", card.get("language", ""))
    st.markdown("**Metrics**")
    st.dataframe(pd.Series(card.get("metrics", {}), name="value"), width="stretch")
    st.markdown(f"**Labels:** {', '.join(card.get('labels', []))}")
    dataset = card.get("dataset") or {}
    st.markdown(f"**Dataset:** {dataset.get('name')}@{dataset.get('version')}")
    lora = card.get("lora") or {}
    st.markdown(
        f"**LoRA:** r={lora.get('r')} alpha={lora.get('alpha')} dropout={lora.get('dropout')}"
    )
    created = datetime.fromtimestamp(float(card.get("created_at", 0)), tz=timezone.utc)
    st.caption(
        f"run {card.get('run_id')} · by {card.get('created_by')} · {created:%Y-%m-%d %H:%M} UTC"
    )


def stage_history(api: ApiClient, ref: str) -> None:
    changes = api.model_history(ref).get("changes", [])
    st.markdown("**Stage history**")
    if not changes:
        st.caption("no stage changes yet")
        return
    rows = [
        {"version": c["version"], "from": c.get("from_stage") or "(new)", "to": c["to_stage"],
         "by": c["by"], "reason": c.get("reason") or "",
         "at": f"{datetime.fromtimestamp(float(c['at']), tz=timezone.utc):%Y-%m-%d %H:%M} UTC"}
        for c in reversed(changes)
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def stage_form(api: ApiClient, ref: str) -> None:
    with st.form("transition"):
        stage = st.selectbox("New stage", ["Staging", "Production", "Archived"], key="stage_to")
        reason = st.text_input("Reason", key="stage_reason", help="Recorded in the stage history")
        force = st.checkbox("Override the promotion gate (needs a reason)", key="stage_force")
        pressed = st.form_submit_button("Change stage")
    if not pressed:
        return
    try:
        done = api.transition(ref, stage, reason, force)
    except ApiError as err:
        st.error(f"not changed: {err}")
        return
    st.success(f"{ref}: {done.get('from') or 'None'} → {done['to']}")


def render(api: ApiClient) -> None:
    st.title("Model registry")
    cols = st.columns(4)
    name = cols[0].text_input("Name", key="reg_name")
    base = cols[1].text_input("Base model", key="reg_base")
    language = cols[2].text_input("Language", key="reg_language")
    stage = cols[3].selectbox("Stage", STAGES, key="reg_stage")
    page = api.search_models(
        name=name, base_model=base, language=language,
        stage=None if stage == "(any)" else stage, limit=100,
    )  # fmt: skip
    cards = page.get("items", [])
    st.caption(f"{page.get('total', len(cards))} models")
    if cards:
        rows = [card_row(c) for c in cards]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        ref = st.selectbox("Card", [c["ref"] for c in cards], key="reg_card")
        card_view(next(c for c in cards if c["ref"] == ref))
        if session.is_admin():
            stage_form(api, ref)
        stage_history(api, ref)  # after the form: it shows a change just made
    need = st.text_input("Describe what you need", key="reg_need",
                         help="e.g. english sentiment of product reviews")  # fmt: skip
    if need.strip():
        found = api.recommend(need.strip())
        for item in found.get("results", []):
            reasons = "; ".join(item.get("reasons", []))
            st.markdown(f"- **{item['model']['ref']}** score {item['score']:.3f}: {reasons}")
