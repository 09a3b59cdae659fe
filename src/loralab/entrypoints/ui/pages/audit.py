"""Audit log (admins): newest first, with filters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from loralab.entrypoints.ui.client import ApiClient

OUTCOMES = ["(any)", "allowed", "denied", "failed"]


def render(api: ApiClient) -> None:
    st.title("Audit log")
    chain = api.audit_verify()
    if chain.get("ok"):
        st.success(f"the audit chain verifies ({chain.get('checked', 0)} records)")
    else:
        st.error(
            f"the audit chain is broken at record {chain.get('first_bad_id')}: "
            f"{chain.get('problem')} ({chain.get('checked', 0)} records before it are intact)"
        )
    cols = st.columns(4)
    user = cols[0].text_input("User", key="audit_user")
    action = cols[1].text_input("Action", key="audit_action", help="e.g. login, job.submit")
    outcome = cols[2].selectbox("Outcome", OUTCOMES, key="audit_outcome")
    since = cols[3].date_input("Since", value=None, key="audit_since")
    page = api.audit(
        user=user, action=action, since=since.isoformat() if since else None, limit=200
    )
    items = page.get("items", [])
    if outcome != "(any)":
        items = [r for r in items if r.get("outcome") == outcome]
    st.caption(f"{page.get('total', 0)} records match; showing {len(items)} of the newest")
    if not items:
        st.info("no audit records match")
        return
    keys = ("at", "username", "action", "target", "outcome", "client")
    st.dataframe(
        pd.DataFrame([{k: r.get(k) for k in keys} for r in items]),
        hide_index=True,
        width="stretch",
    )
