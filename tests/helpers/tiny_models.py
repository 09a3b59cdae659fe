"""Tiny random encoders of every BERT family, with tokenizers trained in the test (no hub).

Each family gets the kind of tokenizer its real checkpoints ship: WordPiece (BERT, DistilBERT,
ELECTRA), byte-level BPE (RoBERTa) or a SentencePiece-style Unigram (ALBERT, XLM-RoBERTa,
CamemBERT, DeBERTa-v2). The tokenizer is trained on a few sentences with the ``tokenizers``
library, wrapped as a ``PreTrainedTokenizerFast`` and saved beside a 2-layer, 32-wide encoder
built from the family's ``*Config`` class, so ``resolve_model(<folder>)`` loads both offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Special tokens as the families' own checkpoints name them.
BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "mask_token": "<mask>",
}


def _specials_in_order(specials: dict[str, str]) -> list[str]:
    """The distinct special tokens, in the order they get the first ids."""
    order: list[str] = []
    for token in specials.values():
        if token not in order:
            order.append(token)
    return order


def _token_id(tok: Any, token: str) -> int:
    found = tok.token_to_id(token)
    if found is None:
        raise ValueError(f"the trained tokenizer lacks {token!r}")
    return int(found)


def _wordpiece(sentences: list[str]) -> tuple[Any, dict[str, str]]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    specials = BERT_SPECIALS
    tok = Tokenizer(models.WordPiece(unk_token=specials["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        sentences, WordPieceTrainer(vocab_size=200, special_tokens=_specials_in_order(specials))
    )
    cls, sep = specials["cls_token"], specials["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, _token_id(tok, cls)), (sep, _token_id(tok, sep))],
    )
    return tok, specials


def _byte_bpe(sentences: list[str]) -> tuple[Any, dict[str, str]]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    specials = ROBERTA_SPECIALS
    tok = Tokenizer(models.BPE(unk_token=specials["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        sentences,
        BpeTrainer(
            vocab_size=400,
            special_tokens=_specials_in_order(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    cls, sep = specials["cls_token"], specials["sep_token"]
    tok.post_processor = processors.RobertaProcessing(
        (sep, _token_id(tok, sep)), (cls, _token_id(tok, cls)), add_prefix_space=False
    )
    return tok, specials


def _unigram(sentences: list[str], specials: dict[str, str]) -> tuple[Any, dict[str, str]]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        sentences,
        UnigramTrainer(
            vocab_size=120,
            special_tokens=_specials_in_order(specials),
            unk_token=specials["unk_token"],
        ),
    )
    cls, sep = specials["cls_token"], specials["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, _token_id(tok, cls)), (sep, _token_id(tok, sep))],
    )
    return tok, specials


TOKENIZER_KINDS: dict[str, Callable[[list[str]], tuple[Any, dict[str, str]]]] = {
    "wordpiece": _wordpiece,
    "bpe": _byte_bpe,
    "unigram-bert": lambda s: _unigram(s, BERT_SPECIALS),
    "unigram-roberta": lambda s: _unigram(s, ROBERTA_SPECIALS),
}


def build_tokenizer(kind: str, sentences: list[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` of ``kind`` (see TOKENIZER_KINDS) trained on ``sentences``."""
    from transformers import PreTrainedTokenizerFast

    tok, specials = TOKENIZER_KINDS[kind](sentences)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


@dataclass(frozen=True)
class TinyFamily:
    """How to build one family: its config class (by name in transformers), the tokenizer kind,
    and config keys that differ from BERT's names."""

    config_class: str
    tokenizer: str
    sizes: dict[str, int]


_BERT_SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

TINY_FAMILIES: dict[str, TinyFamily] = {
    "bert": TinyFamily("BertConfig", "wordpiece", _BERT_SIZES),
    "distilbert": TinyFamily(
        "DistilBertConfig", "wordpiece", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
    ),
    "electra": TinyFamily("ElectraConfig", "wordpiece", {**_BERT_SIZES, "embedding_size": 16}),
    "roberta": TinyFamily("RobertaConfig", "bpe", _BERT_SIZES),
    "xlm-roberta": TinyFamily("XLMRobertaConfig", "unigram-roberta", _BERT_SIZES),
    "camembert": TinyFamily("CamembertConfig", "unigram-roberta", _BERT_SIZES),
    "albert": TinyFamily("AlbertConfig", "unigram-bert", {**_BERT_SIZES, "embedding_size": 16}),
    "deberta-v2": TinyFamily(
        "DebertaV2Config",
        "unigram-bert",
        {**_BERT_SIZES, "position_buckets": 16, "max_relative_positions": 32},
    ),
}


def build_tiny_model(
    model_type: str, directory: Path, sentences: list[str], max_positions: int = 80
) -> Path:
    """Save a tiny random ``model_type`` encoder (safetensors) and its tokenizer in ``directory``.

    The encoder is saved without a classification head, as pre-trained checkpoints are: the
    training library adds a fresh one.
    """
    import torch
    import transformers

    family = TINY_FAMILIES[model_type]
    tokenizer = build_tokenizer(family.tokenizer, sentences)
    config_class = getattr(transformers, family.config_class)
    config = config_class(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        **family.sizes,
    )
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
