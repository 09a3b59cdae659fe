"""Models in memory: one resident base per base model, LoRA adapters swapped per batch.

Each registered version is a LoRA adapter plus its classifier head (PEFT ``modules_to_save``).
Versions that share a base model and label count are loaded as named adapters into ONE PEFT
model; a batch selects its adapter under that base's lock, so a request never runs with another
adapter's weights. Adapters live in an LRU cache of ``cache_size``; the least recently used one
is deleted from the model when a new one needs room.

``merged`` mode instead folds one hot model's adapter into its base (no adapter arithmetic per
layer): a little faster per batch, but a second copy of the base for that model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from loralab.errors import InvalidInput
from loralab.serving.resolve import ModelHandle
from loralab.training.catalog import ModelSourceError, resolve_model
from loralab.training.devices import DeviceError, select_device
from loralab.training.inference import Prediction, classify
from loralab.training.model import check_adapter_dir, load_base_model


@dataclass
class _Base:
    model: Any  # a PeftModel holding every cached adapter of this group
    tokenizer: Any
    lock: threading.Lock


class ModelPool:
    """Loads, caches and runs model versions. Thread-safe."""

    def __init__(self, cache_size: int = 8, device: str = "auto", precision: str = "auto") -> None:
        try:
            choice = select_device(device, precision if precision != "fp16" else "auto")
        except DeviceError as err:
            raise InvalidInput(str(err)) from None
        self.device = choice.device
        self.precision = choice.precision
        self.description = choice.description
        self.dtype = torch.bfloat16 if choice.precision == "bf16" else torch.float32
        self.cache_size = cache_size
        self._bases: dict[tuple[str, int], _Base] = {}
        self._adapters: OrderedDict[str, ModelHandle] = OrderedDict()
        self._merged: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()  # guards the cache bookkeeping, not model work

    # -- loading --------------------------------------------------------------------------
    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._adapters) + [f"{k} (merged)" for k in self._merged]

    def ensure(self, handle: ModelHandle) -> None:
        """Make ``handle`` resident (LRU-touch it when it already is)."""
        if handle.key not in self._merged:
            self._resident(handle)

    def _resident(self, handle: ModelHandle) -> _Base:
        with self._lock:
            if handle.key in self._adapters:
                self._adapters.move_to_end(handle.key)
            else:
                self._load_adapter(handle)
            return self._bases[handle.group]

    def _load_adapter(self, handle: ModelHandle) -> None:
        _check_safetensors(handle)
        base = self._bases.get(handle.group)
        if base is None:
            base = self._load_base(handle)
        else:
            with base.lock:
                base.model.load_adapter(str(handle.run.adapter), adapter_name=handle.key)
                base.model.to(device=self.device, dtype=self.dtype)
        self._adapters[handle.key] = handle
        while len(self._adapters) > self.cache_size:
            old_key, old = self._adapters.popitem(last=False)
            self._evict(old_key, old)

    def _load_base(self, handle: ModelHandle) -> _Base:
        from peft import PeftModel
        from transformers import AutoTokenizer

        try:
            model = load_base_model(resolve_model(handle.base_model), list(handle.labels))
        except ModelSourceError as err:
            raise InvalidInput(f"{handle.key}: {err}") from None
        peft = PeftModel.from_pretrained(
            model, str(handle.run.adapter), adapter_name=handle.key, is_trainable=False
        )
        peft = peft.to(device=self.device, dtype=self.dtype).eval()
        tokenizer = AutoTokenizer.from_pretrained(
            str(handle.run.tokenizer), trust_remote_code=False
        )
        base = _Base(peft, tokenizer, threading.Lock())
        self._bases[handle.group] = base
        return base

    def _evict(self, key: str, handle: ModelHandle) -> None:
        base = self._bases[handle.group]
        with base.lock:
            if len(base.model.peft_config) == 1:  # its last adapter: drop the whole base
                del self._bases[handle.group]
            else:
                if key in base.model.active_adapters:
                    other = next(k for k in base.model.peft_config if k != key)
                    base.model.set_adapter(other)
                base.model.delete_adapter(key)

    def merge(self, handle: ModelHandle) -> None:
        """Serve ``handle`` from merged weights (its own copy of the base). One hot model at a
        time: a previously merged version goes back to being served as an adapter."""
        from loralab.training.inference import load_predictor

        if handle.key in self._merged:
            return
        _check_safetensors(handle)
        predictor = load_predictor(handle.run, device=self.device, precision=self.precision)
        with self._lock:
            self._merged = {handle.key: (predictor.model, predictor.tokenizer)}

    # -- predicting -----------------------------------------------------------------------
    def predict(self, handle: ModelHandle, texts: list[str]) -> list[Prediction]:
        """Classify ``texts`` with exactly the weights of ``handle``."""
        labels = list(handle.labels)
        merged = self._merged.get(handle.key)
        if merged is not None:
            model, tokenizer = merged
            return classify(model, tokenizer, labels, texts, self.device, handle.max_length)
        while True:
            base = self._resident(handle)
            with base.lock:
                if handle.key not in base.model.peft_config:
                    continue  # evicted between lookup and lock: load it again
                if base.model.active_adapter != handle.key:
                    base.model.set_adapter(handle.key)
                return classify(
                    base.model, base.tokenizer, labels, texts, self.device, handle.max_length
                )


def _check_safetensors(handle: ModelHandle) -> None:
    try:
        check_adapter_dir(handle.run.adapter)
    except ModelSourceError as err:
        raise InvalidInput(f"{handle.key} cannot be served: {err}") from None
