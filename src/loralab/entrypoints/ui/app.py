"""The loralab web UI: ``streamlit run src/loralab/entrypoints/ui/app.py -- --api-url URL``.

Signed out, only the sign-in page exists; signed in, every page of the platform (the audit log
for admins). Pages talk to the platform API over HTTP only.
"""

from __future__ import annotations

import streamlit as st

from loralab.entrypoints.ui import session
from loralab.entrypoints.ui.pages import (
    audit,
    datasets,
    experiments,
    jobs,
    new_job,
    playground,
    registry,
    signin,
)


def sign_in_page() -> None:
    session.run_page(signin.render)


def sign_out_page() -> None:
    session.run_page(signin.render_signout)


def new_job_page() -> None:
    session.run_page(new_job.render)


def jobs_page() -> None:
    session.run_page(jobs.render)


def experiments_page() -> None:
    session.run_page(experiments.render)


def datasets_page() -> None:
    session.run_page(datasets.render)


def registry_page() -> None:
    session.run_page(registry.render)


def playground_page() -> None:
    session.run_page(playground.render)


def audit_page() -> None:
    session.run_page(audit.render)


def pages() -> list[st.Page]:
    """The pages this session may open."""
    if not session.signed_in():
        return [st.Page(sign_in_page, title="Sign in", url_path="signin")]
    found = [
        st.Page(jobs_page, title="Job monitor", url_path="jobs", default=True),
        st.Page(new_job_page, title="New job", url_path="new-job"),
        st.Page(experiments_page, title="Experiments", url_path="experiments"),
        st.Page(datasets_page, title="Datasets", url_path="datasets"),
        st.Page(registry_page, title="Model registry", url_path="registry"),
        st.Page(playground_page, title="Playground", url_path="playground"),
    ]
    if session.is_admin():
        found.append(st.Page(audit_page, title="Audit log", url_path="audit"))
    found.append(st.Page(sign_out_page, title="Sign out", url_path="signout"))
    return found


def main() -> None:
    st.set_page_config(page_title="loralab", layout="wide")
    session.configure_process_logging()
    st.navigation(pages()).run()


main()
