"""The platform API answers what its OpenAPI document says, whatever it is sent.

A real uvicorn API (SQLite in a temporary folder, the fake queue: no job runs) is fuzzed by
schemathesis from its own ``/openapi.json``: every operation, as an admin and as a user, with
data that fits the schema and data that does not, some of it laced with hostile Unicode (NUL,
right-to-left overrides, combining marks, 4-byte emoji, terminal escapes, very long text). No
answer may be a server error, and every answer must match the document: its status code, its
content type and its body. Bounded: a few examples per operation, no shrinking, and a wall-clock
budget for the whole sweep.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from tests.api.conftest import FakeQueue
from tests.integration.services import serve_in_process

from loralab.bootstrap import build_services
from loralab.entrypoints.api.app import create_app
from loralab.settings import (
    AuthSettings,
    DbSettings,
    LimitSettings,
    RegistrySettings,
    Settings,
    StorageSettings,
)

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.integration]

SECRET = "a-schemathesis-signing-secret-that-is-long-enough-0123"
PASSWORD = "correct horse battery"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
URL_TEXT = 2000  # longest hostile text put in a query string
BUDGET_S = 150.0  # the whole sweep; operations left when it runs out are named in the failure
HOSTILE = [
    "\x00",
    "a\x00b",
    "\u202egnp.exe",  # right-to-left override
    "\u2066\u2067\u2069",
    "e\u0301\u0302\u0303\u0304\u0305" * 20,  # stacked combining marks
    "\U0001f600\U0001f9ec\U0001f1fa\U0001f1f8",  # 4-byte emoji and a flag
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",  # terminal colour and title escapes
    "\ufeff\u200b\u200d",
    "../../etc/passwd@v1",
    "x" * 70_000,
    "\U0010ffff\ufffe",
]


@dataclass
class Live:
    url: str
    admin: dict[str, str]
    user: dict[str, str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Live]:
    from tests.conftest import make_rows, write_csv

    from loralab.datasets import service as datasets

    tmp = tmp_path_factory.mktemp("schemathesis")
    settings = Settings(
        storage=StorageSettings(results_dir=tmp / "results", models_dir=tiny_bert.parent),
        registry=RegistrySettings(card_dir=tmp / "cards"),
        db=DbSettings(url=f"sqlite:///{tmp / 'platform.db'}"),
        auth=AuthSettings(secret_key=SECRET),  # type: ignore[arg-type]
        limits=LimitSettings(
            prefix=f"loralab:test:fuzz:{uuid.uuid4().hex}:",
            login_failures_per_address=100_000,
            password_failures_per_user=100_000,
            train_per_user=100_000,
            uploads_per_user=100_000,
            predict_per_user=100_000,
        ),
    )
    shared = write_csv(tmp / "reviews.csv", make_rows(40))
    datasets.register_dataset(settings, "reviews", shared, user="ops")
    found = build_services(settings, queue=FakeQueue())
    app = create_app(settings, found)
    for name, role in (("root", "admin"), ("alice", "user")):
        found.users.create_user(name, PASSWORD, role)
    with serve_in_process(app) as url:
        yield Live(url, _sign_in(url, "root"), _sign_in(url, "alice"))


def _sign_in(url: str, name: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/login", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _lace(value: Any, hostile: str, where: int) -> Any:
    """``value`` with its ``where``-th string (counted depth-first, wrapping) replaced by
    ``hostile``: the generated shape stays, one text turns hostile."""
    strings: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in list(items):
            if isinstance(item, str):
                strings.append((node, key))
            elif isinstance(item, dict | list):
                walk(item)

    if isinstance(value, dict | list):
        walk(value)
    if not strings:
        return value
    node, key = strings[where % len(strings)]
    node[key] = hostile
    return value


def _laced(case: Any, hostile: str | None, where: int) -> Any:
    if hostile is None:
        return case
    if isinstance(case.body, dict | list):
        case.body = _lace(case.body, hostile, where)
    elif case.query:  # a URL over the server's line limit is refused before the app sees it
        case.query = _lace(case.query, hostile[:URL_TEXT], where)
    return case


def _sweep(operation: Any, mode: GenerationMode, who: dict[str, str], live: Live, n: int) -> None:
    strategy = st.tuples(
        operation.as_strategy(generation_mode=mode),
        st.one_of(st.none(), st.sampled_from(HOSTILE)),
        st.integers(0, 50),
    )

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(drawn: tuple[Any, str | None, int]) -> None:
        case, hostile, where = drawn
        _laced(case, hostile, where).call_and_validate(
            base_url=live.url, headers=dict(who), checks=CHECKS, timeout=30
        )

    run()


def _failures(live: Live, plan: list[tuple[GenerationMode, str, int]]) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, "the document lists the platform's operations"
    found: list[str] = []
    start = time.monotonic()
    for mode, role, n in plan:
        who = live.admin if role == "admin" else live.user
        for operation in operations:
            if time.monotonic() - start > BUDGET_S:
                return [*found, f"out of time before {mode} {role} {operation.label}"]
            try:
                _sweep(operation, mode, who, live, n)
            except Unsatisfiable:
                pass  # nothing can be wrong in a request without parameters (negative mode)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:  # noqa: BLE001 - schemathesis raises a BaseExceptionGroup
                found.append(f"{mode} as {role}: {operation.label}\n{str(err)[:3000]}")
    return found


Plan = list[tuple[GenerationMode, str, int]]
PLAN: Plan = [
    (GenerationMode.POSITIVE, "admin", 12),
    (GenerationMode.NEGATIVE, "admin", 8),
    (GenerationMode.POSITIVE, "user", 4),
]


def test_every_answer_matches_the_openapi_document(live: Live) -> None:
    failures = _failures(live, PLAN)
    assert not failures, "\n\n".join(failures)


def test_hostile_text_is_laced_into_one_string() -> None:
    body = {"name": "a", "params": {"notes": ["b", "c"]}, "steps": 3}
    laced = _lace(body, "\x00", 2)
    assert laced == {"name": "a", "params": {"notes": ["b", "\x00"]}, "steps": 3}
