"""Everything a run needs, checked and loaded before anything is written.

Bad input (device, base model, data) raises here, so a failed preparation leaves no run folder
and no tracker run behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, set_seed

from loralab.training.catalog import ResolvedModel, resolve_model
from loralab.training.config import ConfigError, TrainConfig
from loralab.training.data import (
    LabelledTexts,
    build_label_list,
    encode_labels,
    fingerprint,
    read_labelled_texts,
    stratified_split,
)
from loralab.training.devices import DeviceChoice, select_device
from loralab.training.model import build_lora_model, load_tokenizer
from loralab.training.pooling import resolve_pooling


@dataclass
class Prepared:
    """Everything a run needs, checked and loaded, before anything is written."""

    config: TrainConfig
    device: DeviceChoice
    base: ResolvedModel
    labels: list[str]
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    tokenizer: PreTrainedTokenizerBase
    model: Any
    fingerprint: str
    train_rows: int
    validation_rows: int


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], labels: list[int], max_length: int
) -> list[dict[str, Any]]:
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    keys = list(encoded.keys())
    return [{**{k: encoded[k][i] for k in keys}, "labels": labels[i]} for i in range(len(texts))]


def _load_data(config: TrainConfig) -> tuple[LabelledTexts, LabelledTexts, list[str], str]:
    train = read_labelled_texts(config.train_file, config.text_column, config.label_column)
    label_list = build_label_list(train.labels, config.labels)
    train_ids = encode_labels(train, label_list)
    if len(set(train_ids)) < 2:
        raise ConfigError(f"{config.train_file}: a single class; a classifier needs two or more")
    if config.validation_file:
        val = read_labelled_texts(config.validation_file, config.text_column, config.label_column)
        encode_labels(val, label_list)
        return train, val, label_list, fingerprint(train, val)
    train_idx, val_idx = stratified_split(train_ids, config.validation_split, config.seed)

    def pick(idx: list[int], name: str) -> LabelledTexts:
        return LabelledTexts(
            [train.texts[i] for i in idx], [train.labels[i] for i in idx], f"{train.source}:{name}"
        )

    return pick(train_idx, "train"), pick(val_idx, "validation"), label_list, fingerprint(train)


def prepare_training(config: TrainConfig, base_source: str | None = None) -> Prepared:
    """Check and load everything; raises ConfigError/DataError/DeviceError/ModelSourceError.

    ``base_source``: where to load ``config.base_model`` from when the caller resolved its name
    (a local model folder); the run still records the name.
    """
    device = select_device(config.device, config.precision)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    base = resolve_model(base_source or config.base_model)
    train, val, labels, data_fp = _load_data(config)
    tokenizer = load_tokenizer(base)
    index = {name: i for i, name in enumerate(labels)}
    train_rows = _tokenize(
        tokenizer, train.texts, [index[x] for x in train.labels], config.max_length
    )
    val_rows = _tokenize(tokenizer, val.texts, [index[x] for x in val.labels], config.max_length)
    # Evaluation order does not change metrics; sorted by length, its batches carry no padding.
    val_rows.sort(key=lambda row: len(row["input_ids"]))
    set_seed(config.seed)
    model = build_lora_model(
        base,
        labels,
        config.lora_r,
        config.lora_alpha,
        config.lora_dropout,
        config.lora_target_modules,
        resolve_pooling(config.pooling, config.base_model),
    )
    return Prepared(
        config,
        device,
        base,
        labels,
        train_rows,
        val_rows,
        tokenizer,
        model,
        data_fp,
        len(train_rows),
        len(val_rows),
    )
