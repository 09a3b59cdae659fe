"""Mean pooling: the head reads the masked mean of the token vectors, in every family shape."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AlbertConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    RobertaConfig,
)

from loralab.training.config import build_config
from loralab.training.pooling import apply_pooling, masked_mean, resolve_pooling

SMALL = {"vocab_size": 64, "num_labels": 2, "initializer_range": 0.5}  # outputs far from 0
CONFIGS = {
    "bert": BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, **SMALL
    ),
    "roberta": RobertaConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        pad_token_id=1,
        **SMALL,
    ),
    "albert": AlbertConfig(
        embedding_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        **SMALL,
    ),
    "distilbert": DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32, **SMALL),
    "deberta-v2": DebertaV2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, **SMALL
    ),
}


def _model(family: str, pooling: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(CONFIGS[family]).eval()
    apply_pooling(model, pooling)
    return model


def test_masked_mean_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    assert masked_mean(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]
    torch.testing.assert_close(masked_mean(hidden, None), torch.tensor([[104 / 3, 106 / 3]]))


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_mean_pooling_is_padding_invariant_and_differs_from_cls(family: str) -> None:
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 3, 3], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    mean = _model(family, "mean")
    with torch.no_grad():
        alone = mean(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        in_batch = mean(input_ids=padded, attention_mask=mask).logits[:1]
        without_mask = mean(input_ids=ids).logits  # one text, no mask: every token counts
        cls = _model(family, "cls")(input_ids=ids).logits
    torch.testing.assert_close(alone, in_batch, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone, without_mask, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(alone, cls, atol=1e-4), "mean pooling changed nothing"


def test_mean_pooling_survives_lora_training_and_merging() -> None:
    model = _model("bert", "mean")
    peft = get_peft_model(
        model,
        LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query", "value"]),
    )
    ids = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 11, 12, 13]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    loss = peft(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1])).loss
    loss.backward()  # gradients flow through the pooled vector
    for param in peft.parameters():
        if param.requires_grad and param.grad is not None:
            param.data -= 0.5 * param.grad
    peft.eval()
    with torch.no_grad():
        adapter = peft(input_ids=ids, attention_mask=mask).logits
        merged = peft.merge_and_unload()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(adapter, merged, atol=1e-5, rtol=1e-4)


def test_pooling_setting() -> None:
    assert resolve_pooling("cls", "minilm-l6") == "cls"
    assert resolve_pooling("mean", "/some/local/model") == "mean"
    assert resolve_pooling("auto", "/some/local/model") == "cls"
    with pytest.raises(ValueError, match="pooling"):
        resolve_pooling("max", "minilm-l6")
    config = build_config({"train_file": "x.csv", "pooling": "mean"})
    assert config.pooling == "mean"


@pytest.mark.slow
def test_a_mean_pooled_run_records_its_pooling_and_reloads_with_it(
    tiny_bert, sentiment_csv, tmp_path
) -> None:
    import json

    from loralab.training import run_training
    from loralab.training.inference import load_predictor

    config = build_config(
        {
            "experiment": "pool",
            "base_model": str(tiny_bert),
            "train_file": str(sentiment_csv),
            "pooling": "mean",
            "max_steps": 4,
            "batch_size": 8,
            "max_length": 16,
        }
    )
    result = run_training(config, tmp_path / "results")
    info = json.loads(result.run.model_info.read_text(encoding="utf-8"))
    assert info["pooling"] == "mean"
    texts = ["the movie was good good", "it was bad bad really"]
    mean = load_predictor(result.run, precision="fp32")
    info["pooling"] = "cls"  # the same weights read the other way must answer differently
    result.run.model_info.write_text(json.dumps(info), encoding="utf-8")
    cls = load_predictor(result.run, precision="fp32")
    mean_probs = [p.probabilities for p in mean.predict(texts)]
    cls_probs = [p.probabilities for p in cls.predict(texts)]
    assert mean_probs != cls_probs
