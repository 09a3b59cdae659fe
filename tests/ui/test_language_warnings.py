"""The web UI and the language mismatch: the job monitor shows a job's warnings, and the new-job
form offers allow_language_mismatch when the API's TrainRequest schema has it."""

from __future__ import annotations

import pytest

from tests.ui import fake_api
from tests.ui.fake_api import FakeApi
from tests.ui.test_pages import no_exception, open_page, texts

WARNING = (
    "the data is 100% Chinese but base model minilm-l6 reads English: use base_model "
    "bert-base-chinese (see the README, Chinese data)."
)


def test_the_job_monitor_shows_the_jobs_warnings() -> None:
    api = FakeApi()
    api.job.update(warnings=[WARNING])
    app = open_page(api, "jobs")
    app.text_input(key="monitor_task").input("job-1").run()
    no_exception(app)
    assert WARNING in texts(app, "warning")


def test_the_new_job_form_sends_allow_language_mismatch_only_when_ticked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    props = fake_api.TRAIN_SCHEMA["components"]["schemas"]["TrainRequest"]["properties"]
    spec = {"type": "boolean", "default": False, "description": "Train even when ..."}
    monkeypatch.setitem(props, "allow_language_mismatch", spec)
    api = FakeApi()
    app = open_page(api, "new_job")
    no_exception(app)
    start = next(b for b in app.button if b.label == "Start training")
    start.click().run()
    app.checkbox(key="job_allow_language_mismatch").check().run()
    next(b for b in app.button if b.label == "Start training").click().run()
    no_exception(app)
    sent = [body for _, path, body in api.sent if path == "/train"]
    assert len(sent) == 2
    assert "allow_language_mismatch" not in sent[0]
    assert '"allow_language_mismatch":true' in sent[1]
