"""The browser session: API address, the token (only in ``st.session_state``) and the client.

Tests put an ``httpx`` transport under ``TRANSPORT_KEY`` to run pages against a fake API.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from loralab.entrypoints.ui.client import ApiClient, ApiError, ApiProblem, ApiUnavailable, SignedOut

T = TypeVar("T")
log = logging.getLogger("loralab.ui")
TOKEN_KEY = "token"  # noqa: S105 - a session-state key, not a secret
USER_KEY = "user"
NOTICE_KEY = "signin_notice"
TRANSPORT_KEY = "api_transport"
API_URL_KEY = "api_url"
RETRY_SECONDS = 5.0
KEPT_KEY = "kept_input"
RESTORE_KEY = "restore_input"
PAGE_KEY = "current_page"
_NOT_KEPT = {TOKEN_KEY, USER_KEY, NOTICE_KEY, TRANSPORT_KEY, API_URL_KEY, KEPT_KEY, RESTORE_KEY,
             PAGE_KEY}  # fmt: skip


def default_api_url() -> str:
    """``--api-url URL`` after ``--`` on the streamlit command line, or the API's settings."""
    args = sys.argv[1:]
    if "--api-url" in args and args.index("--api-url") + 1 < len(args):
        return args[args.index("--api-url") + 1]
    from loralab.settings import Settings

    api = Settings().api
    host = "127.0.0.1" if api.host in {"0.0.0.0", "::"} else api.host  # noqa: S104 - display
    return f"http://{host}:{api.port}"


@st.cache_resource
def configure_process_logging() -> bool:
    """Once per UI process started with ``-- --api-url URL`` (``make ui``, the services
    script): the platform's log format and redaction. Never configured under tests."""
    if "--api-url" not in sys.argv[1:]:
        return False
    from loralab.observability.logs import configure_logging
    from loralab.settings import Settings

    configure_logging(Settings(), "ui")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per API call
    log.info("web UI up; API at %s", default_api_url())
    return True


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


def sign_out(notice: str | None = None, *, forget_all: bool = False) -> None:
    """Forget the token (``forget_all``: and everything typed); ``notice`` is shown on the
    sign-in page."""
    keys = list(st.session_state.to_dict()) if forget_all else [TOKEN_KEY, USER_KEY]
    for key in keys:
        if key not in (API_URL_KEY, TRANSPORT_KEY):
            st.session_state.pop(key, None)
    if notice:
        st.session_state[NOTICE_KEY] = notice


def keep_typed() -> None:
    """Remember what the user typed (text fields) so sign-in can put it back."""
    user = st.session_state.get(USER_KEY) or {}
    st.session_state[KEPT_KEY] = user.get("username"), st.session_state.get(PAGE_KEY), {
        key: value
        for key, value in st.session_state.to_dict().items()
        if isinstance(value, str) and value and key not in _NOT_KEPT
        and not key.startswith("signin_")
    }  # fmt: skip


def restore_typed(username: str) -> None:
    """Once ``username`` signs in again: what they typed before their session ended (see
    :func:`keep_typed`) goes back into its fields when they next open that page (Streamlit
    drops the values of fields not on screen, so they are set as the page starts). Another
    user signing in on this browser gets none of it."""
    owner, page, typed = st.session_state.pop(KEPT_KEY, None) or (None, None, {})
    if owner == username and typed:
        st.session_state[RESTORE_KEY] = page, dict(typed)


def _put_back_typed(page: str) -> None:
    """Before ``page`` renders: the values kept on it, once."""
    kept_on, typed = st.session_state.get(RESTORE_KEY) or (None, {})
    if kept_on != page:
        return
    del st.session_state[RESTORE_KEY]
    for key, value in typed.items():
        st.session_state[key] = value


def retry_when_back() -> None:
    """Ask the API every few seconds (not a tight loop) and rerun the page once it answers."""

    @st.fragment(run_every=RETRY_SECONDS)
    def probe() -> None:
        try:
            client().health()
        except ApiUnavailable:
            return
        except ApiProblem:
            pass  # it answers, even if it refuses: the page can show the refusal
        st.rerun()

    probe()


def guarded(work: Callable[[], T]) -> T | None:
    """``work()``, or None with the failure shown as a sentence (never a traceback).

    A refused token signs the user out and reruns the app: the sign-in page shows why, and
    what the user had typed comes back once they sign in again.
    """
    try:
        return work()
    except SignedOut as err:
        had_token = signed_in()
        if had_token:
            user = (st.session_state.get(USER_KEY) or {}).get("username")
            log.info("session of %s ended: the API refused its token", user)
            keep_typed()
        sign_out(str(err))
        if had_token:  # the app reruns with only the sign-in page, which shows why
            st.rerun()
        st.error(str(err))
    except ApiUnavailable as err:
        log.warning("%s", err)
        st.error(str(err))
        st.button("Retry now", key="retry_api")
        retry_when_back()
    except (ApiError, ApiProblem) as err:
        st.error(str(err))
    except Exception as err:  # noqa: BLE001 - a page shows a sentence, not a traceback
        log.exception("a page failed")
        st.error(f"this page could not be shown: {type(err).__name__}: {str(err)[:200]}")
    return None


def run_page(render: Callable[[ApiClient], None]) -> None:
    """Run one page with the session's client; failures are sentences on the page."""
    api = client()
    page = f"{render.__module__}.{render.__name__}"
    st.session_state[PAGE_KEY] = page
    if signed_in():
        _put_back_typed(page)
    guarded(lambda: render(api))
