"""`loralab models ...` at 80 columns (or piped): identifiers never cut; ``--json`` parses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.registry_fakes import MemoryRegistry, WordEmbedder, make_settings, register
from typer.testing import CliRunner

from loralab.entrypoints.cli import common
from loralab.entrypoints.cli import models as cli
from loralab.registry.service import RegistryService

NAME = "barsdemo-sentiment-analysis"
DATASET = "product-reviews-2024"


@pytest.fixture()
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RegistryService:
    found = RegistryService(make_settings(tmp_path), MemoryRegistry(), WordEmbedder())
    for _ in range(3):
        register(
            found,
            NAME,
            dataset=DATASET,
            base_model="sentence-transformers/all-MiniLM-L6-v2",
            description="English sentiment classifier for product reviews " * 3,
        )
    found.transition(f"{NAME}@2", "Production", "bob", "better than version one " * 3)
    monkeypatch.setattr(cli, "_service", lambda: found)
    monkeypatch.setattr(common.console, "_width", None)  # the width comes from COLUMNS
    return found


def invoke(*args: str, columns: int = 80) -> str:
    out = CliRunner().invoke(cli.models_app, list(args), env={"COLUMNS": str(columns)})
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("search", "--name", NAME),
        ("show", NAME),
        ("recommend", "sentiment of product reviews"),
        ("recommend", "--like", f"{NAME}@1"),
    ],
)
def test_tables_never_cut_refs_stages_or_dataset_versions(
    service: RegistryService, args: tuple[str, ...]
) -> None:
    output = invoke(*args)
    assert "…" not in output
    assert max(len(line) for line in output.splitlines()) <= 80
    lines = output.splitlines()
    for version in ("1", "2", "3"):
        if args[1:2] == ("--like",) and version == "1":
            continue  # a model is not recommended as like itself
        [row] = [line for line in lines if f"{NAME}@{version} " in line]
        assert f"{DATASET}@v1" in row
        assert ("Production" if version == "2" else "Staging") in row


def test_history_table_keeps_versions_and_stages(service: RegistryService) -> None:
    output = invoke("history", NAME)
    assert "…" not in output
    rows = [line for line in output.splitlines() if "│ Staging " in line]
    assert len(rows) == 4  # three registrations, and 2 promoted from Staging
    assert any("Production" in row for row in rows)


def test_wide_terminals_show_every_column(service: RegistryService) -> None:
    output = invoke("list", columns=160)
    for header in ("model", "stage", "base model", "lang", "task", "accuracy", "dataset"):
        assert header in output


@pytest.mark.parametrize(
    "args",
    [
        ("list", "--json"),
        ("search", "--stage", "Production", "--json"),
        ("show", NAME, "--json"),
        ("show", f"{NAME}@2", "--json"),
        ("card", f"{NAME}@2", "--json"),
        ("history", NAME, "--json"),
        ("recommend", "reviews", "--json"),
    ],
)
def test_json_output_parses(service: RegistryService, args: tuple[str, ...]) -> None:
    data = json.loads(invoke(*args, columns=40))
    text = json.dumps(data)
    assert f"{NAME}@2" in text or '"version": "2"' in text
    assert "Production" in text


def test_json_shapes(service: RegistryService) -> None:
    listed = json.loads(invoke("list", "--json"))
    assert [item["ref"] for item in listed["items"]] == [f"{NAME}@{v}" for v in "321"]
    shown = json.loads(invoke("show", NAME, "--json"))
    assert shown["total"] == 3 and shown["name"] == NAME
    version = json.loads(invoke("show", f"{NAME}@v2", "--json"))  # dataset-style version
    assert (version["ref"], version["stage"]) == (f"{NAME}@2", "Production")
    assert version["run_id"] == service.get_card(f"{NAME}@2").run_id
    history = json.loads(invoke("history", NAME, "--json"))
    assert [(h["version"], h["from"], h["to"]) for h in history][-1] == (
        "2",
        "Staging",
        "Production",
    )
    recommended = json.loads(invoke("recommend", "--like", f"{NAME}@1", "--json"))
    assert {r["ref"] for r in recommended["results"]} == {f"{NAME}@2", f"{NAME}@3"}
    assert recommended["starting_point"] is None


@pytest.mark.parametrize("args", [("recommend",), ("recommend", "reviews", "--like", f"{NAME}@1")])
def test_recommend_needs_exactly_one_question(
    service: RegistryService, args: tuple[str, ...]
) -> None:
    out = CliRunner().invoke(cli.models_app, list(args))
    assert out.exit_code == 2
    assert "exactly one of" in out.output
