"""Finding run folders by id: exact, prefix, ambiguous, unknown and hostile ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from loralab.training.config import TrainConfig
from loralab.training.runs import RunNotFound, create_run, find_run, list_runs


def make_run(results: Path, experiment: str, run_id: str) -> Path:
    root = results / experiment / run_id
    root.mkdir(parents=True)
    (root / "config.yaml").write_text("experiment: x\n", encoding="utf-8")
    return root


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    make_run(results, "sst2", "20261127-001812-a1b2c3")
    make_run(results, "sst2", "20261127-001812-a1ffff")
    make_run(results, "topics", "20261128-090000-0d0e0f")
    make_run(results, "topics", "20261128-090000-0d0e0f-retry")
    return results


def test_exact_id(results: Path) -> None:
    paths = find_run(results, "20261127-001812-a1b2c3")
    assert paths.root == results / "sst2" / "20261127-001812-a1b2c3"
    assert paths.run_id == "20261127-001812-a1b2c3"
    assert paths.experiment == "sst2"


def test_exact_id_wins_over_longer_ids_sharing_the_prefix(results: Path) -> None:
    paths = find_run(results, "20261128-090000-0d0e0f")
    assert paths.root == results / "topics" / "20261128-090000-0d0e0f"


def test_unique_prefix(results: Path) -> None:
    assert find_run(results, "20261127-001812-a1b").root.name == "20261127-001812-a1b2c3"
    assert find_run(results, "20261128-090000-0d0e0f-r").experiment == "topics"


def test_ambiguous_prefix(results: Path) -> None:
    with pytest.raises(RunNotFound, match="ambiguous") as info:
        find_run(results, "20261127")
    assert "20261127-001812-a1b2c3" in str(info.value)
    assert "20261127-001812-a1ffff" in str(info.value)


def test_unknown_id(results: Path) -> None:
    with pytest.raises(RunNotFound, match="no run '20990101-000000-abcdef'"):
        find_run(results, "20990101-000000-abcdef")


def test_folder_without_config_is_not_a_run(results: Path) -> None:
    (results / "sst2" / "20261129-000000-half").mkdir()
    with pytest.raises(RunNotFound):
        find_run(results, "20261129-000000-half")


def test_missing_results_folder(tmp_path: Path) -> None:
    with pytest.raises(RunNotFound):
        find_run(tmp_path / "absent", "20261127")


@pytest.mark.parametrize(
    "hostile",
    [
        "../../etc",
        "..",
        "../outside",
        "/etc/passwd",
        "*",
        "2026*",
        "[a-z]*",
        "?",
        "sst2/20261127-001812-a1b2c3",
        "20261127-001812-A1B2C3",
        "20261127\x00",
        "",
    ],
)
def test_hostile_ids_never_escape(results: Path, hostile: str) -> None:
    # A run outside results/ that a traversal or glob pattern would reach.
    outside = make_run(results.parent, "outside", "etc")
    with pytest.raises(RunNotFound, match="run ids look like"):
        find_run(results, hostile)
    assert outside.is_dir()


def test_create_run_is_found_by_its_id(tmp_path: Path) -> None:
    results = tmp_path / "results"
    config = TrainConfig(experiment="demo")
    paths = create_run(results, config)
    assert paths.experiment == "demo"
    assert paths.artifacts.is_dir()
    assert find_run(results, paths.run_id) == paths
    assert list_runs(results) == [paths]
