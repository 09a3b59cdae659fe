"""The browser session: API address, the token (only in ``st.session_state``) and the client.

Tests put an ``httpx`` transport under ``TRANSPORT_KEY`` to run pages against a fake API.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from loralab.entrypoints.ui.client import ApiClient, ApiError, ApiProblem, ApiUnavailable, SignedOut

T = TypeVar("T")
TOKEN_KEY = "token"  # noqa: S105 - a session-state key, not a secret
USER_KEY = "user"
NOTICE_KEY = "signin_notice"
TRANSPORT_KEY = "api_transport"
API_URL_KEY = "api_url"


def default_api_url() -> str:
    """``--api-url URL`` after ``--`` on the streamlit command line, or the API's settings."""
    args = sys.argv[1:]
    if "--api-url" in args and args.index("--api-url") + 1 < len(args):
        return args[args.index("--api-url") + 1]
    from loralab.settings import Settings

    api = Settings().api
    host = "127.0.0.1" if api.host in {"0.0.0.0", "::"} else api.host  # noqa: S104 - display
    return f"http://{host}:{api.port}"


def api_url() -> str:
    if API_URL_KEY not in st.session_state:
        st.session_state[API_URL_KEY] = default_api_url()
    return str(st.session_state[API_URL_KEY])


def client() -> ApiClient:
    """A client signed in as the session's user (anonymous before sign-in)."""
    return ApiClient(
        api_url(), st.session_state.get(TOKEN_KEY), st.session_state.get(TRANSPORT_KEY)
    )


def signed_in() -> bool:
    return bool(st.session_state.get(TOKEN_KEY))


def is_admin() -> bool:
    user = st.session_state.get(USER_KEY) or {}
    return bool(user.get("role") == "admin")


def sign_out(notice: str | None = None) -> None:
    """Forget the token; ``notice`` is shown on the sign-in page."""
    for key in (TOKEN_KEY, USER_KEY):
        st.session_state.pop(key, None)
    if notice:
        st.session_state[NOTICE_KEY] = notice


def guarded(work: Callable[[], T]) -> T | None:
    """``work()``, or None with the failure shown as a sentence (never a traceback).

    A refused token signs the user out and reruns the app: the sign-in page shows why.
    """
    try:
        return work()
    except SignedOut as err:
        had_token = signed_in()
        sign_out(str(err))
        if had_token:  # the app reruns with only the sign-in page, which shows why
            st.rerun()
        st.error(str(err))
    except ApiUnavailable as err:
        st.error(str(err))
        st.button("Retry now", key="retry_api")
    except (ApiError, ApiProblem) as err:
        st.error(str(err))
    except Exception as err:  # noqa: BLE001 - a page shows a sentence, not a traceback
        st.error(f"this page could not be shown: {type(err).__name__}: {str(err)[:200]}")
    return None


def run_page(render: Callable[[ApiClient], None]) -> None:
    """Run one page with the session's client; failures are sentences on the page."""
    api = client()
    guarded(lambda: render(api))
