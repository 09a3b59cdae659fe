"""Every model family the catalog supports trains, saves, reloads and merges.

For each family in ``catalog.FAMILIES`` a tiny random encoder is built from its config with a
tokenizer trained in the test (tests/helpers/tiny_models.py); the run must put LoRA on exactly
the family's target modules, save exactly its head modules, and predict the same with the adapter
on top of the base model as with the adapter merged into it, reading the sentence by its first
token (cls) or by mean pooling.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tests.conftest import make_rows, write_csv
from tests.helpers.tiny_models import TINY_FAMILIES, build_tiny_model

from loralab.training import TrainConfig, load_config, load_predictor, run_training
from loralab.training.catalog import CATALOG, FAMILIES, resolve_model
from loralab.training.inference import classify
from loralab.training.model import load_adapter, load_base_model
from loralab.training.pooling import Pooling

REPO = Path(__file__).resolve().parents[3]
PROBES = ["the movie was good good", "the food was awful awful", "service it nasty", "lovely"]


def test_every_catalog_family_has_a_tiny_model() -> None:
    """A family added to the catalog must be added to the tiny builders (and so to this test)."""
    assert set(TINY_FAMILIES) == set(FAMILIES)


def test_every_catalog_model_has_a_recipe_that_loads() -> None:
    """configs/<catalog name>.yaml exists for each catalog model, says how to run it, and loads;
    every training recipe names a catalog model and (but for the SST-2 benchmark, whose data lies
    outside the project) a sample that exists."""
    recipes = {
        path.stem: path for path in (REPO / "configs").glob("*.yaml") if "sweep" not in path.stem
    }
    assert set(CATALOG) <= set(recipes)
    for name, path in recipes.items():
        lines = path.read_text("utf-8").splitlines()
        opening = list(itertools.takewhile(lambda line: line.startswith("#"), lines))
        assert any(line.startswith("# Run:") for line in opening), f"{path.name}: how to run?"
        config = load_config(path)
        assert config.base_model in CATALOG, name
        if name in CATALOG:
            assert config.base_model == name
        if name != "sst2":
            assert (REPO / config.train_file).is_file(), f"{path.name}: {config.train_file}"


def _adapter_keys(adapter_dir: Path) -> list[str]:
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as handle:
        return list(handle.keys())


def _module_names(keys: list[str]) -> set[str]:
    """The module names (path parts) that appear in saved parameter keys."""
    return {part for key in keys for part in key.split(".")}


# Mean pooling once per way a head reads the sentence: a pooler inside the encoder over the
# whole sequence (bert) or over the first vector (albert), a pooler outside it (deberta-v2), a
# pre-classifier (distilbert), a head over the first token (roberta; electra, xlm-roberta and
# camembert read it the same way).
MEAN_POOLED = ("albert", "bert", "deberta-v2", "distilbert", "roberta")
CASES: list[tuple[str, Pooling]] = [(t, "cls") for t in sorted(FAMILIES)] + [
    (t, "mean") for t in MEAN_POOLED
]


@pytest.mark.slow
@pytest.mark.parametrize(("model_type", "pooling"), CASES)
def test_family_trains_saves_reloads_and_merges(
    model_type: str, pooling: Pooling, tmp_path: Path
) -> None:
    rows = make_rows(64, seed=3)
    folder = build_tiny_model(model_type, tmp_path / model_type, [t for t, _ in rows] * 4)
    family = FAMILIES[model_type]

    resolved = resolve_model(str(folder))
    assert resolved.model_type == model_type
    assert resolved.family == family

    config = TrainConfig(
        experiment=f"family-{model_type}",
        base_model=str(folder),
        train_file=str(write_csv(tmp_path / "train.csv", rows)),
        validation_split=0.25,
        max_length=64,
        max_steps=4,
        batch_size=8,
        eval_steps=4,
        logging_steps=2,
        learning_rate=0.01,
        lora_dropout=0.0,
        early_stopping_patience=0,
        device="cpu",
        precision="fp32",
        pooling=pooling,
    )
    result = run_training(config, tmp_path / "results")
    assert result.status == "succeeded", result.report
    run = result.run

    # LoRA sits on exactly the family's targets; the head modules are saved in full beside it.
    adapter_config = json.loads((run.adapter / "adapter_config.json").read_text("utf-8"))
    assert set(adapter_config["target_modules"]) == set(family.target_modules)
    # (PEFT adds its own sequence-classification defaults, classifier and score, to the list.)
    declared = set(adapter_config["modules_to_save"])
    assert declared - {"classifier", "score"} == set(family.modules_to_save) - {"classifier"}
    keys = _adapter_keys(run.adapter)
    lora_keys = [k for k in keys if ".lora_A." in k or ".lora_B." in k]
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in lora_keys} == set(
        family.target_modules
    )
    head_keys = [k for k in keys if k not in lora_keys]
    saved_heads = _module_names(head_keys) & set(family.modules_to_save)
    assert saved_heads == set(family.modules_to_save), head_keys

    # Reload: the adapter on top of a fresh base, then merged into it (load_predictor).
    info = json.loads(run.model_info.read_text("utf-8"))
    assert info["pooling"] == pooling
    labels = [str(x) for x in info["labels"]]
    base = load_base_model(resolve_model(info["base_model"]), labels, pooling)
    targets = [n for n, _ in base.named_modules() if n.rsplit(".", 1)[-1] in family.target_modules]
    assert len(lora_keys) == 2 * len(targets)  # an A and a B matrix on every target module
    adapter_model = load_adapter(base, run.adapter).eval()
    predictor = load_predictor(run, device="cpu", precision="fp32")
    assert not any("lora_" in name for name, _ in predictor.model.named_parameters())

    unmerged = classify(adapter_model, predictor.tokenizer, labels, PROBES, "cpu", 64)
    merged = predictor.predict(PROBES)
    assert [p.label_name for p in merged] == [p.label_name for p in unmerged]
    torch.testing.assert_close(
        torch.tensor([list(p.probabilities.values()) for p in merged]),
        torch.tensor([list(p.probabilities.values()) for p in unmerged]),
        atol=1e-5,
        rtol=1e-4,
    )
    # LoRA B starts at zero: trained B weights make the merge change the base weights, so the
    # agreement above is not that of two copies of the untouched base model.
    with safe_open(str(run.adapter / "adapter_model.safetensors"), "pt") as handle:
        trained = [handle.get_tensor(k).abs().max().item() for k in keys if ".lora_B." in k]
    assert min(trained) > 0.0
