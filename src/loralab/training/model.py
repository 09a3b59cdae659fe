"""Loading a base encoder, its tokenizer, and putting LoRA on it with PEFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from loralab.training.catalog import ModelSourceError, ResolvedModel
from loralab.training.pooling import apply_pooling

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def load_tokenizer(model: ResolvedModel) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model.source, trust_remote_code=False)


def load_base_model(
    model: ResolvedModel, labels: list[str], pooling: str = "cls"
) -> PreTrainedModel:
    """The base encoder with a fresh classification head for ``labels`` (safetensors only),
    reading sentences with ``pooling`` (cls | mean, see training/pooling.py)."""
    try:
        base = AutoModelForSequenceClassification.from_pretrained(
            model.source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            use_safetensors=True,
            trust_remote_code=False,
            # A base that already has a head for another label count gets a fresh one.
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"cannot load base model {model.name!r}: {err}") from None
    try:
        apply_pooling(base, pooling)
    except ValueError as err:
        raise ModelSourceError(f"{model.name!r}: {err}") from None
    return base


def build_lora_model(
    model: ResolvedModel,
    labels: list[str],
    r: int,
    alpha: int,
    dropout: float,
    target_modules: tuple[str, ...] | None,
    pooling: str = "cls",
) -> PeftModel:
    """Base model + LoRA adapters; the classifier head is trained in full and saved with them."""
    base = load_base_model(model, labels, pooling)
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules or model.family.target_modules),
        modules_to_save=list(model.family.modules_to_save),
    )
    try:
        return get_peft_model(base, lora)
    except ValueError as err:
        raise ModelSourceError(f"LoRA cannot be applied to {model.name!r}: {err}") from None


def trainable_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def check_adapter_dir(adapter_dir: Path) -> None:
    """Refuse an adapter folder whose weights are not safetensors (pickles can run code)."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelSourceError(f"{adapter_dir}: not an adapter folder (no adapter_config.json)")
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise ModelSourceError(f"{adapter_dir}: adapter weights must be {ADAPTER_WEIGHTS}")
    unsafe = [p.name for p in adapter_dir.iterdir() if p.suffix in {".bin", ".pt", ".pkl", ".pth"}]
    if unsafe:
        raise ModelSourceError(f"{adapter_dir}: refusing non-safetensors files {unsafe}")


def load_adapter(base: PreTrainedModel, adapter_dir: Path) -> PeftModel:
    check_adapter_dir(adapter_dir)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
