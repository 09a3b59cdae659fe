"""/openapi.json describes every answer: each route declares its response model, and real
responses (successes and errors) of the main routes validate against the schema the document
declares for that route and status code (jsonschema, draft 2020-12, as OpenAPI 3.1 uses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx import Response
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydantic import BaseModel
from tests.api.conftest import PASSWORD, Platform, sign_in

from loralab.entrypoints.api import schemas
from loralab.entrypoints.api.serving_app import create_serving_app
from loralab.experiments import service as experiments
from loralab.registry.cards import EMBEDDING_DIM, ModelCard

PLAIN_TEXT = {"/metrics"}  # Prometheus text, described as text/plain


def api_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema]


def is_model(declared: Any) -> bool:
    """A named pydantic model: not None, and not a bare ``dict``/``list`` annotation."""
    return isinstance(declared, type) and issubclass(declared, BaseModel)


def check_every_route_is_typed(app: FastAPI) -> None:
    untyped = [
        (sorted(r.methods), r.path)
        for r in api_routes(app)
        if not is_model(r.response_model) and r.path not in PLAIN_TEXT
    ]
    assert not untyped, f"routes without a response model: {untyped}"
    paths = app.openapi()["paths"]
    for path in PLAIN_TEXT & set(paths):
        assert "text/plain" in paths[path]["get"]["responses"]["200"]["content"]


def test_every_route_of_both_apps_has_a_response_model(platform: Platform) -> None:
    client, found, _ = platform
    check_every_route_is_typed(client.app)  # type: ignore[arg-type]
    check_every_route_is_typed(create_serving_app(found.settings, service=found.predictions))


def test_the_route_check_catches_an_untyped_route() -> None:
    app = FastAPI()

    @app.get("/typed")
    def typed() -> schemas.MlflowInfo:
        return schemas.MlflowInfo(tracking_uri="sqlite:", ui="")

    check_every_route_is_typed(app)

    @app.get("/loose")
    def loose() -> dict[str, Any]:  # a bare dict describes nothing
        return {}

    with pytest.raises(AssertionError, match="/loose"):
        check_every_route_is_typed(app)


class Described:
    """Validates responses against what an app's OpenAPI document declares for them."""

    def __init__(self, app: Any) -> None:
        self.doc = app.openapi()

    def schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        responses = self.doc["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path} answered {status}: not described"
        body = responses[str(status)]["content"]["application/json"]["schema"]
        assert body, f"{method} {path} {status}: an empty schema describes nothing"
        return {**body, "components": self.doc["components"]}

    def check(self, method: str, path: str, response: Response) -> Any:
        """The response's JSON, after validating it against the declared schema."""
        schema = self.schema(method, path, response.status_code)
        Draft202012Validator(schema).validate(response.json())
        return response.json()

    def component(self, name: str) -> Draft202012Validator:
        ref = {"$ref": f"#/components/schemas/{name}", "components": self.doc["components"]}
        return Draft202012Validator(ref)


JOB = {"train_file": "reviews@latest", "base_model": "tiny-bert", "max_steps": 2}
CSV = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(20))


def test_real_responses_match_the_declared_schemas(platform: Platform) -> None:
    client, _, _ = platform
    spec = Described(client.app)
    call = spec.check
    root, alice, bob = sign_in(client, "root"), sign_in(client, "alice"), sign_in(client, "bob")
    login = {"username": "alice", "password": PASSWORD}
    token = call("POST", "/login", client.post("/login", json=login))
    assert token["user"]["username"] == "alice" and "password_hash" not in token["user"]
    call("GET", "/me", client.get("/me", headers=alice))
    call("GET", "/users", client.get("/users", headers=root))
    new = {"username": "carol", "password": PASSWORD}
    call("POST", "/users", client.post("/users", json=new, headers=root))
    call("PATCH", "/users/{username}", client.patch("/users/carol", json={"role": "admin"},
                                                    headers=root))  # fmt: skip
    reset = {"new_password": PASSWORD + "!"}
    call("POST", "/users/{username}/password",
         client.post("/users/carol/password", json=reset, headers=root))  # fmt: skip

    job = call("POST", "/train", client.post("/train", json=JOB, headers=alice))
    assert "id" not in job and job["state"] == "queued" and job["queue_position"] == 1
    task = job["task_id"]
    call("GET", "/task/{task_id}", client.get(f"/task/{task}", headers=alice))
    assert [j["task_id"] for j in call("GET", "/tasks", client.get("/tasks", headers=alice))] == [
        task
    ]
    call("POST", "/task/{task_id}/cancel", client.post(f"/task/{task}/cancel", headers=alice))

    files = {"file": ("mine.csv", CSV.encode(), "text/csv")}
    made = call("POST", "/datasets", client.post("/datasets", data={"name": "mine"},
                                                 files=files, headers=alice))  # fmt: skip
    assert made["created"] is True and "owner" not in made and "path" not in made
    listed = call("GET", "/datasets", client.get("/datasets", headers=alice))
    assert {d["ref"]: d["owner"] for d in listed} == {"mine@v1": "alice", "reviews@v1": None}
    call("GET", "/datasets/{ref}", client.get("/datasets/mine@v1", headers=alice))

    page = call("GET", "/audit/logs", client.get("/audit/logs?limit=5", headers=root))
    assert page["limit"] == 5 and len(page["items"]) == 5 and page["total"] > 5
    call("GET", "/experiments", client.get("/experiments", headers=root))
    call("GET", "/models/search", client.get("/models/search", headers=bob))
    call("GET", "/mlflow", client.get("/mlflow"))
    assert call("GET", "/health", client.get("/health"))["database"] == "ok"


def test_error_answers_match_the_declared_schemas(platform: Platform) -> None:
    client, _, _ = platform
    spec = Described(client.app)
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    task = client.post("/train", json=JOB, headers=alice).json()["task_id"]
    client.post(f"/task/{task}/cancel", headers=alice)
    answers = [
        ("GET", "/me", client.get("/me"), 401),
        ("GET", "/users", client.get("/users", headers=bob), 403),
        ("GET", "/task/{task_id}", client.get(f"/task/{task}", headers=bob), 404),
        ("POST", "/task/{task_id}/cancel", client.post(f"/task/{task}/cancel", headers=alice),
         409),
        ("POST", "/train", client.post("/train", json={**JOB, "owner": "x"}, headers=alice), 422),
        ("POST", "/train", client.post("/train", json={**JOB, "train_file": "no@v9"},
                                       headers=alice), 422),
        ("GET", "/datasets/{ref}", client.get("/datasets/nothere@v1", headers=alice), 404),
        ("POST", "/models/transition",
         client.post("/models/transition", json={"model": "nothere@1", "stage": "Staging"},
                     headers=bob), 403),
        ("POST", "/login", client.post("/login", json={"username": "x", "password": "y"}), 401),
    ]  # fmt: skip
    for method, path, response, status in answers:
        assert response.status_code == status, (method, path, response.text)
        spec.check(method, path, response)


def test_the_standalone_prediction_service_describes_its_answers(platform: Platform) -> None:
    _, found, _ = platform
    app = create_serving_app(found.settings, service=found.predictions)
    spec = Described(app)
    client = TestClient(app)  # no lifespan: it would close the platform's shared service
    health = spec.check("GET", "/health", client.get("/health"))
    assert health["model_loaded"] is False
    missing = client.post("/predict", json={"text": "fine", "model": "nothere@1"})
    assert missing.status_code == 404
    spec.check("POST", "/predict", missing)


def test_the_declared_schemas_refuse_a_wrong_body(platform: Platform) -> None:
    client, _, _ = platform
    spec = Described(client.app)
    job = client.post("/train", json=JOB, headers=sign_in(client, "alice")).json()
    validator = Draft202012Validator(spec.schema("GET", "/task/{task_id}", 200))
    validator.validate(job)
    for broken in (
        {k: v for k, v in job.items() if k != "state"},
        {**job, "state": "sleeping"},
        {**job, "steps": [{"name": "queued", "status": "asleep"}]},
        {**job, "progress": {"step": "three"}},
    ):
        with pytest.raises(ValidationError):
            validator.validate(broken)


def test_cards_and_run_summaries_keep_their_public_shape(platform: Platform) -> None:
    client, _, _ = platform
    spec = Described(client.app)
    card = ModelCard(
        name="demo", version="2", run_id="r1", base_model="tiny-bert", language="English",
        task="sentiment", labels=["neg", "pos"], metrics={"accuracy": 0.9},
        dataset={"name": "reviews", "version": "v1"}, lora={"r": 8, "alpha": 16, "dropout": 0.1},
        created_by="alice", created_at=1.0, embedding=[0.5] * EMBEDDING_DIM,
    )  # type: ignore[arg-type]  # fmt: skip
    shown = schemas.CardPublic.of(card).model_dump(mode="json")
    spec.component("CardPublic").validate(shown)
    assert shown["ref"] == "demo@2" and shown["stage"] == "Staging" and "embedding" not in shown
    summary = experiments.RunSummary(
        "demo",
        "r1",
        "succeeded",
        "tiny-bert",
        0.9,
        None,
        "2025-01-01 10:00",
        Path("/srv/results/demo/r1"),  # a server path: never shown
    )
    public = schemas.RunSummary.of(summary).model_dump(mode="json")
    spec.component("RunSummary").validate(public)
    assert public["path"] is None and public["accuracy"] == 0.9
