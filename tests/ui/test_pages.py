"""Each page of the web UI under Streamlit's AppTest, against a fake API (httpx MockTransport).

Pages run as the real app runs them (``session.run_page``), with the token and the fake
transport in the session state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from loralab.entrypoints.ui import session
from tests.ui.fake_api import TOKEN, FakeApi


def page_script(module: str, function: str) -> None:
    import importlib

    from loralab.entrypoints.ui import session

    page = importlib.import_module(f"loralab.entrypoints.ui.pages.{module}")
    session.run_page(getattr(page, function))


def open_page(
    api: FakeApi, module: str, function: str = "render", signed_in: bool = True
) -> AppTest:
    app = AppTest.from_function(page_script, args=(module, function), default_timeout=20)
    app.session_state[session.API_URL_KEY] = "http://api.test:8080"
    app.session_state[session.TRANSPORT_KEY] = api.transport()
    if signed_in:
        app.session_state[session.TOKEN_KEY] = TOKEN
        app.session_state[session.USER_KEY] = {"username": "alice", "role": api.role}
    return app.run()


def texts(app: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(app, kind)]


def everything(app: AppTest) -> str:
    parts: list[Any] = []
    for kind in ("title", "subheader", "markdown", "caption", "error", "warning", "info", "success",
                 "code", "metric"):  # fmt: skip
        parts += [getattr(e, "value", "") for e in getattr(app, kind)]
    return "\n".join(str(p) for p in parts)


def no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def test_sign_in_keeps_the_token_in_the_session_only() -> None:
    api = FakeApi()
    app = open_page(api, "signin", signed_in=False)
    app.text_input(key="signin_username").input("alice")
    app.text_input(key="signin_password").input("wrong")
    app.button[0].click().run()
    assert texts(app, "error") == ["wrong username or password"]
    assert session.TOKEN_KEY not in app.session_state
    app.text_input(key="signin_password").input("right")
    app.button[0].click().run()
    no_exception(app)
    assert app.session_state[session.TOKEN_KEY] == TOKEN
    assert not any(TOKEN in url for _, url, _ in api.sent)  # never in a URL


def test_an_expired_token_returns_to_sign_in_with_a_sentence() -> None:
    api = FakeApi(expired=True)
    app = open_page(api, "jobs")
    no_exception(app)
    assert session.TOKEN_KEY not in app.session_state
    assert "expired" in app.session_state[session.NOTICE_KEY]
    signin = open_page(api, "signin", signed_in=False)
    signin.session_state[session.NOTICE_KEY] = "your session has ended"
    signin.run()
    assert texts(signin, "warning") == ["your session has ended"]


def test_a_dead_api_is_a_sentence_with_a_retry() -> None:
    app = open_page(FakeApi(down=True), "jobs")
    no_exception(app)
    assert texts(app, "error") == [
        "the API at http://api.test:8080 is not answering; retrying shortly"
    ]
    assert [b.label for b in app.button] == ["Retry now"]


def test_sign_out_forgets_the_token() -> None:
    app = open_page(FakeApi(), "signin", "render_signout")
    app.button[0].click().run()
    assert session.TOKEN_KEY not in app.session_state


def test_job_monitor_shows_stepper_curves_log_and_list() -> None:
    api = FakeApi()
    app = open_page(api, "jobs")
    app.text_input(key="monitor_task").input("job-1").run()
    no_exception(app)
    shown = everything(app)
    assert "✓ queued → ✓ validating → ▶ training" in shown
    assert "step 2 loss=0.7" in shown
    assert len(app.get("vega_lite_chart")) == 2  # train loss and evaluation
    assert ("GET", "/task/job-1/metrics", "") in api.sent
    cancel = next(b for b in app.button if b.label == "Cancel job")
    assert cancel.disabled  # not before the confirmation
    app.checkbox(key="cancel_confirm").check().run()
    next(b for b in app.button if b.label == "Cancel job").click().run()
    assert ("POST", "/task/job-1/cancel", "") in api.sent


def test_a_failed_job_shows_its_error_and_stops_polling() -> None:
    api = FakeApi()
    api.job.update(state="failed", error="loss became nan at step 3")
    app = open_page(api, "jobs")
    app.text_input(key="monitor_task").input("job-1").run()
    no_exception(app)
    assert "the job failed: loss became nan at step 3" in texts(app, "error")
    assert app.session_state["monitor_live"] is False
    assert not [b for b in app.button if b.label == "Cancel job"]


def test_another_users_job_is_not_found_in_words() -> None:
    app = open_page(FakeApi(), "jobs")
    app.text_input(key="monitor_task").input("job-2").run()
    no_exception(app)
    assert "no job job-2" in texts(app, "error")


def test_new_job_submits_the_form_and_shows_refusals_by_field() -> None:
    api = FakeApi(refuse_train=(422, [{"loc": ["body", "epochs"], "msg": "must be > 0",
                                       "type": "value_error"}]))  # fmt: skip
    app = open_page(api, "new_job")
    no_exception(app)
    assert "dataset warning: 3 duplicate texts" in texts(app, "warning")
    app.text_input(key="job_epochs").input("-1")
    next(b for b in app.button if b.label == "Start training").click().run()
    no_exception(app)
    assert "epochs: must be > 0" in texts(app, "error")
    assert app.selectbox(key="job_base_model").options[:1] == ["minilm-l6 (English)"]
    assert any("about 6 optimiser steps" in t for t in texts(app, "info"))
    sent = [body for method, path, body in api.sent if path == "/train"]
    assert '"epochs":-1.0' in sent[-1] and '"train_file":"reviews@v1"' in sent[-1]
    assert '"base_model":"minilm-l6"' in sent[-1]
    api.refuse_train = None
    next(b for b in app.button if b.label == "Start training").click().run()
    assert app.session_state["watch_task"] == "job-1"
    monitor = open_page(api, "jobs")
    monitor.session_state["watch_task"] = "job-1"
    monitor.run()
    assert monitor.text_input(key="monitor_task").value == "job-1"
    assert "Job job-1" in texts(monitor, "subheader")


def test_experiments_compares_runs_side_by_side() -> None:
    api = FakeApi(role="admin")
    app = open_page(api, "experiments")
    no_exception(app)
    assert len(app.dataframe) == 1
    table = app.dataframe[0].value
    assert (
        list(table["run"]) == ["20260101-000000-aaaaaa", "20260101-000000-bbbbbb"][::-1]
        or len(table) == 2
    )
    app.selectbox(key="runs_sort").select("minutes").run()
    assert app.dataframe[0].value["minutes"].iloc[0] == 10.0  # the finished run, descending
    box = app.multiselect(key="compare_runs")
    assert sorted(box.options) == ["20260101-000000-aaaaaa", "20260101-000000-bbbbbb"]
    box.select("20260101-000000-aaaaaa").select("20260101-000000-bbbbbb").run()
    no_exception(app)
    shown = everything(app)
    assert "Train loss, overlaid" in shown and "Per-class report" in shown
    settings = app.dataframe[2].value  # metrics, settings, then the per-class reports
    assert list(settings.index)[0] == "learning_rate"  # the difference comes first
    assert len(app.get("image")) == 2  # a confusion matrix per run
    assert "127.0.0.1:5000/#/experiments/1/runs/" + "a" * 32 in shown


def test_config_differences_keep_only_what_differs() -> None:
    from loralab.entrypoints.ui.pages.experiments import config_differences

    runs = [{"run_id": "a", "params": {"lr": "1", "r": "8"}},
            {"run_id": "b", "params": {"lr": "2", "r": "8"}}]  # fmt: skip
    assert list(config_differences(runs).index) == ["lr"]


def test_datasets_lists_versions_diffs_plots_and_uploads() -> None:
    api = FakeApi()
    app = open_page(api, "datasets")
    no_exception(app)
    assert "3 duplicate texts" in texts(app, "warning")
    app.selectbox(key="dataset_other").select("reviews@v1").run()
    no_exception(app)
    assert "reviews@v1 → reviews@v1" in texts(app, "caption")
    assert [m.value for m in app.metric][:3] == ["1", "2", "3"]
    app.text_input(key="dataset_other_ref").input("nope@1").run()
    assert any(e.startswith("no diff:") for e in texts(app, "error"))
    app.toggle(key="dataset_plots").set_value(True).run()
    no_exception(app)
    assert len(app.get("image")) == 1


def test_registry_searches_recommends_and_lets_admins_promote() -> None:
    api = FakeApi(role="admin")
    app = open_page(api, "registry")
    no_exception(app)
    assert "demo@v1" in everything(app)
    app.selectbox(key="stage_to").select("Production")
    app.text_input(key="stage_reason").input("best so far")
    next(b for b in app.button if b.label == "Change stage").click().run()
    assert "demo@v1: None → Production" in texts(app, "success")
    assert "looks good" in app.dataframe[-1].value["reason"].tolist()  # the stage history
    app.text_input(key="reg_need").input("english sentiment").run()
    assert "same language" in everything(app)
    user_app = open_page(FakeApi(role="user"), "registry")
    assert not [b for b in user_app.button if b.label == "Change stage"]


def test_playground_marks_low_confidence() -> None:
    api = FakeApi()
    app = open_page(api, "playground")
    app.text_area(key="play_texts").input("great\nmeh")
    app.button[0].click().run()
    no_exception(app)
    frame = app.dataframe[0].value
    assert list(frame["confidence"]) == ["ok", "low"]
    assert list(frame["label"]) == ["positive", "negative"]


@pytest.mark.parametrize("outcome,rows", [("(any)", 1), ("denied", 0)])
def test_audit_filters(outcome: str, rows: int) -> None:
    app = open_page(FakeApi(role="admin"), "audit")
    app.selectbox(key="audit_outcome").select(outcome).run()
    no_exception(app)
    assert len(app.dataframe) == rows
    assert texts(app, "success") == ["the audit chain verifies (12 records)"]


def test_audit_shows_a_broken_chain_in_words() -> None:
    app = open_page(FakeApi(role="admin", chain_ok=False), "audit")
    no_exception(app)
    assert texts(app, "error")[0].startswith("the audit chain is broken at record 7: hash mismatch")


def test_what_was_typed_survives_an_expired_token_for_the_same_user_only() -> None:
    api = FakeApi()
    app = open_page(api, "playground")
    app.text_area(key="play_texts").input("typed before it expired")
    api.expired = True
    app.button[0].click().run()
    no_exception(app)
    owner, page, kept = app.session_state[session.KEPT_KEY]
    assert owner == "alice" and kept["play_texts"] == "typed before it expired"
    assert page == "loralab.entrypoints.ui.pages.playground.render"
    api.expired = False
    for name, restored in (("bob", False), ("alice", True)):
        signin = open_page(api, "signin", signed_in=False)
        signin.session_state[session.KEPT_KEY] = (owner, page, kept)
        signin.text_input(key="signin_username").input(name)
        signin.text_input(key="signin_password").input("right")
        signin.button[0].click().run()
        no_exception(signin)
        assert (session.RESTORE_KEY in signin.session_state) is restored
    back = open_page(api, "playground")
    back.session_state[session.RESTORE_KEY] = (page, kept)
    back.run()
    assert back.text_area(key="play_texts").value == "typed before it expired"
    assert session.RESTORE_KEY not in back.session_state  # put back once


APP = Path(__file__).resolve().parents[2] / "src/loralab/entrypoints/ui/app.py"


def _app(api: FakeApi, user: dict[str, str] | None) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=20)
    app.session_state[session.API_URL_KEY] = "http://api.test:8080"
    app.session_state[session.TRANSPORT_KEY] = api.transport()
    if user:
        app.session_state[session.TOKEN_KEY] = TOKEN
        app.session_state[session.USER_KEY] = user
    return app.run()


def test_the_app_shows_only_sign_in_until_signed_in() -> None:
    # AppTest does not rerun st.navigation's callable pages, so each state is a first run.
    app = _app(FakeApi(), None)
    no_exception(app)
    assert texts(app, "title") == ["Sign in to loralab"]
    signed_in = _app(FakeApi(), {"username": "alice", "role": "user"})
    no_exception(signed_in)
    assert texts(signed_in, "title") == ["Job monitor"]  # the default page once signed in
