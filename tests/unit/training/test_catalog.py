"""Base-model catalog: the packaged default, local directories, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loralab.training.catalog import (
    CATALOG,
    FAMILIES,
    ModelSourceError,
    resolve_model,
)


def model_dir(path: Path, config: object) -> Path:
    path.mkdir(parents=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (path / "config.json").write_text(text, encoding="utf-8")
    return path


def test_packaged_default_resolves_offline() -> None:
    resolved = resolve_model("minilm-l6")
    source = Path(resolved.source)
    assert source.is_dir()
    assert (source / "config.json").is_file()
    assert list(source.glob("*.safetensors"))
    assert json.loads((source / "config.json").read_text())["model_type"] == "bert"
    assert resolved.name == "minilm-l6"
    assert resolved.language == "English"
    assert resolved.model_type == "bert"
    assert resolved.family.target_modules == ("query", "value")
    assert "classifier" in resolved.family.modules_to_save


def test_local_directory_of_a_supported_type(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "my-distilbert", {"model_type": "distilbert"})
    resolved = resolve_model(str(path))
    assert resolved.source == str(path.resolve())
    assert resolved.model_type == "distilbert"
    assert resolved.family == FAMILIES["distilbert"]
    assert resolved.family.target_modules == ("q_lin", "v_lin")
    assert resolved.language == "English"


def test_local_chinese_directory(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "bert-base-chinese-local", {"model_type": "bert"})
    assert resolve_model(str(path)).language == "Chinese"


def test_unsupported_model_type_is_refused(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "gpt", {"model_type": "gpt2"})
    with pytest.raises(ModelSourceError) as info:
        resolve_model(str(path))
    message = str(info.value)
    assert "'gpt2'" in message
    assert "not a supported encoder" in message
    assert "bert" in message  # lists what is supported


def test_directory_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no readable config.json"):
        resolve_model(str(tmp_path / "empty"))


@pytest.mark.parametrize("config", ["{not json", [1, 2], {"architectures": ["BertModel"]}])
def test_config_json_without_model_type(tmp_path: Path, config: object) -> None:
    path = model_dir(tmp_path / "m", config)
    with pytest.raises(ModelSourceError, match="config.json"):
        resolve_model(str(path))


@pytest.mark.parametrize("name", ["./does/not/exist", "/no/such/model/dir", "a/b/c"])
def test_missing_path_mentions_the_catalog(name: str) -> None:
    with pytest.raises(ModelSourceError) as info:
        resolve_model(name)
    message = str(info.value)
    assert "not a catalog name and no such directory" in message
    for catalog_name in CATALOG:
        assert catalog_name in message


def test_every_catalog_entry_is_complete() -> None:
    assert "minilm-l6" in CATALOG
    for name, entry in CATALOG.items():
        assert entry.name == name
        assert entry.language in {"English", "Chinese"}, name
        assert entry.hub_id, name
        assert entry.description, name
    assert CATALOG["bert-base-chinese"].language == "Chinese"
    assert [e.name for e in CATALOG.values() if e.packaged] == ["minilm-l6"]


def test_every_family_targets_attention_modules() -> None:
    for model_type, family in FAMILIES.items():
        assert len(family.target_modules) == 2, model_type
        assert "classifier" in family.modules_to_save, model_type
