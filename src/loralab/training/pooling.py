"""How the classifier reads a sentence: the first token ([CLS]) or the mean of all tokens.

Every BERT-family classification head reads the vector of the first token (BERT and ALBERT
through their pooler, RoBERTa, ELECTRA, DistilBERT and DeBERTa directly). Sentence-embedding
checkpoints such as all-MiniLM-L6-v2 were trained to be read by *mean pooling* instead.
``mean`` pooling puts the attention-masked mean of the encoder's output vectors in the first
token's place, so the family's own head (and its saved weights) stays exactly as it is.

The hooks are plain tensor operations: they run under autograd, in merged models and in a
traced ONNX export alike.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import torch
from torch import nn

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = ("cls", "mean")

# Catalog names whose `auto` pooling is mean (measured in bench/recipe_curves.py).
MEAN_POOLED_BASES: frozenset[str] = frozenset()


def default_pooling(base_model: str) -> Pooling:
    """The pooling ``auto`` means for a base model name (a catalog name or a path)."""
    return "mean" if base_model in MEAN_POOLED_BASES else "cls"


def resolve_pooling(requested: str, base_model: str) -> Pooling:
    if requested == "auto":
        return default_pooling(base_model)
    if requested not in POOLINGS:
        raise ValueError(f"pooling={requested!r} is not one of auto, cls, mean")
    return "mean" if requested == "mean" else "cls"


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the sequence of ``hidden`` [batch, seq, dim], counting only unmasked tokens."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask[:, : hidden.shape[1]].unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _with_mean_first(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``hidden`` with the first token's vector replaced by the masked mean of all tokens."""
    mean = masked_mean(hidden, attention_mask)
    return torch.cat([mean.unsqueeze(1), hidden[:, 1:]], dim=1)


class _MeanPooling:
    """Hooks on the base encoder (BertModel, RobertaModel, ...) and, where the base has its own
    pooler inside (BERT, ALBERT), on that pooler."""

    def __init__(self) -> None:
        self._local = threading.local()  # serving runs one model from several threads

    def __deepcopy__(self, _memo: dict[int, Any]) -> _MeanPooling:
        # PEFT deep-copies the pooler (modules_to_save) with its hooks: the copy must share
        # this state, which the base model's hook fills in.
        return self

    def remember_mask(
        self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            mask = args[1]
        self._local.mask = mask

    def remember_sequence(self, _module: nn.Module, _args: Any, output: Any) -> None:
        self._local.sequence = output[0]

    def pool_output(self, _module: nn.Module, _args: Any, output: Any) -> Any:
        """The base's sequence output, read by heads outside it (RoBERTa, DistilBERT, ...)."""
        pooled = _with_mean_first(output[0], self._local.mask)
        if isinstance(output, tuple):
            return (pooled, *output[1:])
        output["last_hidden_state"] = pooled
        return output

    def pool_input(self, _module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The input of a pooler inside the base: the whole sequence (BERT) or the first
        token's vector already taken from it (ALBERT)."""
        hidden = args[0]
        if hidden.dim() == 3:
            return (_with_mean_first(hidden, self._local.mask), *args[1:])
        return (masked_mean(self._local.sequence, self._local.mask), *args[1:])


def apply_pooling(model: nn.Module, pooling: str) -> None:
    """Make ``model`` (a transformers *ForSequenceClassification, before PEFT wraps it: the hooks
    stay through wrapping and merging) read its sentence vector with ``pooling``. ``cls`` is the
    architecture's own way: nothing changes."""
    if pooling == "cls":
        return
    if pooling != "mean":
        raise ValueError(f"pooling={pooling!r} is not one of cls, mean")
    base = getattr(model, "base_model", model)  # BertModel, RobertaModel, DistilBertModel...
    if base is model:
        raise ValueError(f"mean pooling: {type(model).__name__} has no base encoder")
    hooks = _MeanPooling()
    base.register_forward_pre_hook(hooks.remember_mask, with_kwargs=True)
    base.register_forward_hook(hooks.pool_output)
    pooler = getattr(base, "pooler", None)
    if isinstance(pooler, nn.Module):
        pooler.register_forward_pre_hook(hooks.pool_input)
        encoder = getattr(base, "encoder", None)
        if isinstance(encoder, nn.Module):
            encoder.register_forward_hook(hooks.remember_sequence)
