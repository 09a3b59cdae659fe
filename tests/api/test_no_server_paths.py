"""No answer of any route names a server path: not the results home, not the working directory
(issue 11, class 6). Walks every GET route as an admin after uploads (good and refused) and jobs."""

from __future__ import annotations

import os
import re

from tests.api.conftest import Platform, sign_in
from tests.api.test_api_datasets_jobs import _rows_csv, train, upload


def test_no_answer_contains_a_server_path(platform: Platform) -> None:
    client, found, _ = platform
    root = sign_in(client, "root")
    answers: list[str] = []
    ref = upload(client, root, "mine", seed=1)
    bad = client.post(
        "/datasets",
        data={"name": "bad"},
        files={"file": ("bad.csv", b"text,label\n,\n,x\n", "text/csv")},
        headers=root,
    )
    answers.append(bad.text)
    wrong = client.post(
        "/datasets",
        data={"name": "cols", "text_column": "nope"},
        files={"file": ("c.csv", _rows_csv(3), "text/csv")},
        headers=root,
    )
    answers.append(wrong.text)
    job = train(client, root, ref)
    answers.append(job.text)
    values = {"ref": ref, "task_id": job.json().get("task_id", "x"), "run_id": "x", "name": "m"}
    for route in client.app.routes:  # type: ignore[attr-defined]
        if "GET" not in getattr(route, "methods", set()) or route.path.startswith("/docs"):
            continue
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x"), route.path)
        answers.append(client.get(path, headers=root).text)
    home = str(found.settings.storage.results_dir.resolve())
    for forbidden in (home, str(found.settings.storage.results_dir), os.getcwd()):
        leaks = [a[:300] for a in answers if forbidden in a]
        assert leaks == [], (forbidden, leaks)
    assert bad.status_code == 422 and wrong.status_code == 422
