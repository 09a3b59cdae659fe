"""Models in memory: one resident base per base model, LoRA adapters swapped per batch.

Each registered version is a LoRA adapter plus its classifier head (PEFT ``modules_to_save``).
Versions that share a base model and label count are loaded as named adapters into ONE PEFT
model; a batch selects its adapter under that base's lock, so a request never runs with another
adapter's weights. Adapters live in an LRU cache of ``cache_size``; the least recently used one
is deleted from the model when a new one needs room.

``merged`` mode instead folds one hot model's adapter into its base (no adapter arithmetic per
layer): a little faster per batch, but a second copy of the base for that model. With an
:class:`~loralab.serving.onnx_cache.OnnxCache` the hot model runs on ONNX Runtime (exported on
first use, cached with the version, checked against PyTorch); when that fails it runs on
PyTorch, and when ORT fails at request time the batch is answered by the adapter on PyTorch.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from loralab.errors import InvalidInput
from loralab.serving.onnx_cache import OnnxCache, OnnxUnavailable
from loralab.serving.resolve import ModelHandle
from loralab.training.catalog import ModelSourceError, resolve_model
from loralab.training.devices import DeviceError, select_device
from loralab.training.inference import Prediction, classify
from loralab.training.model import check_adapter_dir, load_base_model
from loralab.training.onnx_export import OnnxClassifier

log = logging.getLogger("loralab.serving")


@dataclass
class _Base:
    model: Any  # a PeftModel holding every cached adapter of this group
    tokenizer: Any
    lock: threading.Lock


@dataclass
class _Hot:
    """The merged (hot) model: on ONNX Runtime (``onnx``) or PyTorch (``model``)."""

    tokenizer: Any
    model: Any = None
    onnx: OnnxClassifier | None = None

    @property
    def backend(self) -> str:
        return "onnx" if self.onnx is not None else "pytorch"


class ModelPool:
    """Loads, caches and runs model versions. Thread-safe."""

    def __init__(
        self,
        cache_size: int = 8,
        device: str = "auto",
        precision: str = "auto",
        onnx: OnnxCache | None = None,
    ) -> None:
        try:
            choice = select_device(device, precision if precision != "fp16" else "auto")
        except DeviceError as err:
            raise InvalidInput(str(err)) from None
        self.device = choice.device
        self.precision = choice.precision
        self.description = choice.description
        self.dtype = torch.bfloat16 if choice.precision == "bf16" else torch.float32
        self.cache_size = cache_size
        self._bases: dict[tuple[str, int, str], _Base] = {}
        self._adapters: OrderedDict[str, ModelHandle] = OrderedDict()
        self._merged: dict[str, _Hot] = {}
        self.onnx = onnx  # None: the hot model runs on PyTorch
        if onnx is not None:
            onnx.device = self.device
        self.onnx_note: str | None = None  # why the hot model is not on ORT, when it is not
        self._lock = threading.Lock()  # guards the cache bookkeeping, not model work

    # -- loading --------------------------------------------------------------------------
    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._adapters) + [f"{k} (merged)" for k in self._merged]

    def backend(self, key: str) -> str | None:
        """``onnx`` or ``pytorch`` for the merged (hot) version ``key``; None for others."""
        hot = self._merged.get(key)
        return hot.backend if hot is not None else None

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
            model = load_base_model(
                resolve_model(handle.base_model), list(handle.labels), handle.pooling
            )
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
        """Serve ``handle`` from merged weights (its own copy of the base): on ONNX Runtime
        when the pool has an ONNX cache and the export checks out, else on PyTorch. One hot
        model at a time: a previously merged version goes back to being served as an adapter."""
        from loralab.training.inference import load_predictor

        if handle.key in self._merged:
            return
        _check_safetensors(handle)
        if self.onnx is not None:
            try:
                cached = self.onnx.load(handle)
            except Exception as err:  # noqa: BLE001 - whatever ORT or the export raised
                if not isinstance(err, OnnxUnavailable):
                    err = OnnxUnavailable(f"{type(err).__name__}: {err}")
                self.onnx_note = str(err)
                log.warning("%s runs on PyTorch: %s", handle.key, err)
            else:
                self.onnx_note = None
                log.info(
                    "%s runs on ONNX Runtime (%s, %s; max probability difference %.1e)",
                    handle.key,
                    "exported now" if cached.built else "from the cache",
                    ", ".join(cached.classifier.providers),
                    cached.max_probability_diff,
                )
                with self._lock:
                    self._merged = {
                        handle.key: _Hot(cached.classifier.tokenizer, None, cached.classifier)
                    }
                return
        predictor = load_predictor(handle.run, device=self.device, precision=self.precision)
        with self._lock:
            self._merged = {handle.key: _Hot(predictor.tokenizer, predictor.model)}

    # -- predicting -----------------------------------------------------------------------
    def predict(self, handle: ModelHandle, texts: list[str]) -> list[Prediction]:
        """Classify ``texts`` with exactly the weights of ``handle``."""
        labels = list(handle.labels)
        hot = self._merged.get(handle.key)
        if hot is not None and hot.onnx is not None:
            try:
                return hot.onnx.classify(texts, labels, handle.max_length)
            except Exception as err:  # noqa: BLE001 - ORT's own errors: fall back, say why
                log.warning(
                    "ONNX Runtime failed for %s (%s): answering on PyTorch", handle.key, err
                )
                with self._lock:
                    if self._merged.get(handle.key) is hot:
                        self._merged = {}
                self.onnx_note = f"ONNX Runtime failed at request time: {err}"
        elif hot is not None:
            return classify(hot.model, hot.tokenizer, labels, texts, self.device, handle.max_length)
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
