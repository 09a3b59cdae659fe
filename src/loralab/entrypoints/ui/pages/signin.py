"""Sign in (and out). The token is kept only in the browser session's server-side state."""

from __future__ import annotations

import streamlit as st

from loralab.entrypoints.ui import session
from loralab.entrypoints.ui.client import ApiClient, ApiError


def render(api: ApiClient) -> None:
    st.title("Sign in to loralab")
    notice = st.session_state.pop(session.NOTICE_KEY, None)
    if notice:
        st.warning(notice)
    with st.form("signin"):
        username = st.text_input("Username", key="signin_username")
        password = st.text_input("Password", type="password", key="signin_password")
        pressed = st.form_submit_button("Sign in")
    if not pressed:
        return
    if not username or not password:
        st.error("type your username and password")
        return
    try:
        answer = api.login(username, password)
    except ApiError as err:
        session.log.info("sign-in refused for %s: %s", username, err)
        st.error(str(err))
        return
    session.log.info("%s signed in", username)
    st.session_state[session.TOKEN_KEY] = answer["access_token"]
    st.session_state[session.USER_KEY] = answer["user"]
    session.restore_typed(answer["user"]["username"])
    st.rerun()


def render_signout(api: ApiClient) -> None:
    user = st.session_state.get(session.USER_KEY) or {}
    st.title("Sign out")
    st.write(f"Signed in as **{user.get('username', '?')}** ({user.get('role', '?')}).")
    if st.button("Sign out", type="primary"):
        session.sign_out("you are signed out", forget_all=True)
        st.rerun()
