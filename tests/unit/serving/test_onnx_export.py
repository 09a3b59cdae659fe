"""training.onnx_export: a merged tiny BERT traced to ONNX answers like PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from loralab.training.catalog import resolve_model
from loralab.training.inference import classify
from loralab.training.model import build_lora_model, load_base_model
from loralab.training.onnx_export import (
    AGREEMENT_TEXTS,
    CHUNK,
    ONNX_FILE,
    OnnxClassifier,
    OnnxExportError,
    check_agreement,
    export_onnx,
)

LABELS = ["positive", "negative", "neutral"]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_export_agrees_with_pytorch(tiny_bert: Path, tmp_path: Path, pooling: str) -> None:
    model = load_base_model(resolve_model(str(tiny_bert)), LABELS, pooling).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    path = export_onnx(model, tokenizer, tmp_path / "out")
    assert path == tmp_path / "out" / ONNX_FILE
    assert [p.name for p in (tmp_path / "out").iterdir()] == [ONNX_FILE]  # no temp folder left
    onnx = OnnxClassifier(path, tokenizer, threads=1)
    assert onnx.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    agreement = check_agreement(model, tokenizer, onnx, LABELS, 32)
    assert agreement.ok, agreement.describe()
    assert agreement.texts == len(AGREEMENT_TEXTS) * 2  # each text alone, then all in one batch
    assert agreement.max_probability_diff < 1e-5
    # a padded batch of several lengths, truncated to max_length: the same answers
    texts = ["good good", "bad " * 40, "ok"]
    want = classify(model, tokenizer, LABELS, texts, "cpu", 16)
    got = onnx.classify(texts, LABELS, 16)
    assert [p.label_name for p in got] == [p.label_name for p in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a.probability - b.probability) < 1e-5
        assert list(a.probabilities) == LABELS
    # a batch larger than CHUNK runs as chunks of similar length: still in the callers' order
    many = [
        " ".join(["good", "bad", "fine"][: 1 + i % 3] * (1 + i % 7)) for i in range(3 * CHUNK + 1)
    ]
    chunked = onnx.logits(many, 32)
    alone = [onnx.logits([text], 32)[0] for text in many]
    torch.testing.assert_close(
        torch.from_numpy(chunked), torch.from_numpy(np.stack(alone)), atol=1e-5, rtol=1e-4
    )


def test_export_refuses_peft_and_non_fp32_models(tiny_bert: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    peft = build_lora_model(resolve_model(str(tiny_bert)), LABELS, 4, 8, 0.0, None)
    with pytest.raises(OnnxExportError, match="merged"):
        export_onnx(peft, tokenizer, tmp_path / "peft")
    bf16 = load_base_model(resolve_model(str(tiny_bert)), LABELS).to(torch.bfloat16)
    with pytest.raises(OnnxExportError, match="fp32"):
        export_onnx(bf16, tokenizer, tmp_path / "bf16")
    assert not (tmp_path / "peft" / ONNX_FILE).exists()


def test_a_disagreeing_model_is_reported(tiny_bert: Path, tmp_path: Path) -> None:
    """check_agreement can fail: an ONNX file of other weights does not pass."""
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = load_base_model(resolve_model(str(tiny_bert)), LABELS).eval()
    other = load_base_model(resolve_model(str(tiny_bert)), LABELS).eval()
    with torch.no_grad():
        other.classifier.weight.mul_(-50.0)
    onnx = OnnxClassifier(export_onnx(other, tokenizer, tmp_path / "other"), tokenizer)
    agreement = check_agreement(model, tokenizer, onnx, LABELS, 32)
    assert not agreement.ok
    assert agreement.max_probability_diff > 1e-3
