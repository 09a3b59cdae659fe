"""Card schema, stage names and refs."""

from __future__ import annotations

import json

import pytest
from tests.helpers.registry_fakes import card_dict

from loralab.errors import InvalidInput
from loralab.registry.cards import Stage, parse_ref, parse_stage, validate_card, version_number


def test_valid_card_round_trips() -> None:
    card = validate_card(card_dict())
    assert card.stage is Stage.STAGING
    again = validate_card(json.loads(card.model_dump_json()))
    assert again == card


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ([0.1] * 383, "384"),
        ([0.1] * 385, "384"),
        ([float("nan")] + [0.1] * 383, "NaN"),
        ([float("inf")] + [0.1] * 383, "NaN"),
        ([0.0] * 384, "all zeros"),
    ],
)
def test_bad_embeddings_are_rejected(embedding: list[float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_card(card_dict(embedding=embedding))


@pytest.mark.parametrize(
    "changes",
    [
        {"unknown_field": 1},
        {"stage": "Prod"},
        {"labels": []},
        {"version": "0"},
        {"name": "bad name"},
        {"metrics": {"accuracy": float("nan")}},
        {"dataset": {"version": "v1"}},
    ],
)
def test_bad_cards_name_the_field(changes: dict) -> None:
    with pytest.raises(InvalidInput, match="invalid model card"):
        validate_card(card_dict(**changes))


@pytest.mark.parametrize("name", ["Staging", "production", "ARCHIVED", "pRoDuCtIoN"])
def test_stage_names_any_case(name: str) -> None:
    assert parse_stage(name).value.lower() == name.lower()


@pytest.mark.parametrize("name", ["production ", " Staging", "Prod", "", "None", "archive"])
def test_bad_stage_names_list_the_three(name: str) -> None:
    with pytest.raises(InvalidInput, match="Staging, Production, Archived"):
        parse_stage(name)


@pytest.mark.parametrize(
    "ref",
    ["m", "m@", "m@0", "m@x", "@1", "m@1@2", "a b@1", "m@v", "m@v0", "m@vv3", "m@3v", "m@ v3"],
)
def test_bad_refs(ref: str) -> None:
    with pytest.raises(InvalidInput, match="NAME@VERSION"):
        parse_ref(ref)


def test_ref_parses() -> None:
    assert parse_ref("sentiment.v2@12") == ("sentiment.v2", "12")


@pytest.mark.parametrize("ref", ["sentiment@v3", "sentiment@V3", "sentiment@3"])
def test_dataset_style_versions_are_understood(ref: str) -> None:
    assert parse_ref(ref) == ("sentiment", "3")


@pytest.mark.parametrize(
    ("tag", "number"), [("3", "3"), ("v12", "12"), ("production", None), ("v0", None), ("x3", None)]
)
def test_version_number(tag: str, number: str | None) -> None:
    assert version_number(tag) == number
