"""Reloading a trained run and predicting with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from loralab.training.catalog import ModelSourceError, resolve_model
from loralab.training.devices import select_device
from loralab.training.model import load_adapter, load_base_model
from loralab.training.runs import RunPaths


@dataclass(frozen=True)
class Prediction:
    label: int
    label_name: str
    probability: float
    probabilities: dict[str, float]


class Predictor:
    """A merged LoRA classifier on one device, ready to classify texts."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: list[str],
        device: str,
        max_length: int,
        info: dict[str, Any],
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.device = device
        self.max_length = max_length
        self.info = info

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        """Classify texts; returns one :class:`Prediction` per text, in order."""
        results: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            results.extend(
                classify(
                    self.model, self.tokenizer, self.labels, batch, self.device, self.max_length
                )
            )
        return results


@torch.inference_mode()
def classify(
    model: Any, tokenizer: Any, labels: list[str], texts: list[str], device: str, max_length: int
) -> list[Prediction]:
    """One forward pass over ``texts`` (padded to the longest, not to max_length)."""
    encoded = tokenizer(
        texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    ).to(device)
    logits = model(**encoded).logits.float()
    probs = torch.softmax(logits, dim=-1).cpu()
    return predictions_from_probabilities(probs.tolist(), labels)


def predictions_from_probabilities(rows: list[list[float]], labels: list[str]) -> list[Prediction]:
    """One :class:`Prediction` per row of class probabilities: the most probable label."""
    results = []
    for row in rows:
        best = max(range(len(row)), key=row.__getitem__)
        results.append(
            Prediction(
                best,
                labels[best],
                float(row[best]),
                {name: float(p) for name, p in zip(labels, row, strict=True)},
            )
        )
    return results


def load_predictor(run: RunPaths, device: str = "auto", precision: str = "auto") -> Predictor:
    """Load a run's base model + adapter (safetensors only) and merge them for fast inference.

    precision "auto" uses bf16 weights where the device computes bf16 natively, else fp32.
    """
    info_path = run.model_info
    if not info_path.is_file() or not run.adapter.is_dir():
        raise ModelSourceError(f"run {run.run_id} has no saved model (did it finish?)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    labels = [str(x) for x in info["labels"]]
    choice = select_device(device, "auto" if precision == "auto" else precision)
    pooling = str(info.get("pooling", "cls"))  # runs saved before pooling existed read [CLS]
    base = load_base_model(resolve_model(info["base_model"]), labels, pooling)
    model = load_adapter(base, run.adapter).merge_and_unload()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(choice.precision, torch.float32)
    model = model.to(device=choice.device, dtype=dtype).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer), trust_remote_code=False)
    return Predictor(
        model,
        tokenizer,
        labels,
        choice.device,
        int(info["max_length"]),
        {**info, "device": choice.description, "run_id": run.run_id},
    )
