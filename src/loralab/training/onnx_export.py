"""A merged classifier as ONNX, and running it with ONNX Runtime.

:func:`export_onnx` traces a merged (no PEFT layers) fp32 ``*ForSequenceClassification`` model
to ``model.onnx`` with dynamic batch and sequence axes; the pooling hooks
(training/pooling.py) are plain tensor operations, so a mean-pooled model traces with its
pooling in the graph. :class:`OnnxClassifier` runs the file with every graph optimisation ORT
has (BERT-family attention and layer-norm fusions included) and answers exactly like
:func:`loralab.training.inference.classify`. :func:`check_agreement` compares the two on fixed
texts: a file is only worth serving when it agrees with the PyTorch model it came from.

Pure library: torch, transformers, numpy and onnxruntime; nothing else of loralab but the
training package.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loralab.training.inference import Prediction, classify, predictions_from_probabilities

ONNX_FILE = "model.onnx"
OUTPUT_NAME = "logits"
TOKENIZER_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")

# Texts every export is checked on: short and long, padded in one batch, odd characters.
AGREEMENT_TEXTS: tuple[str, ...] = (
    "a gripping, beautifully acted film.",
    "dull , lifeless and far too long .",
    "I expected more; the ending fell completely flat and the middle dragged on forever.",
    "not bad at all",
    "The service was quick, the food was cold, and nobody apologised.",
    "ok",
    "An unexpectedly moving story about family, memory and the things we never say aloud.",
    "Worst purchase ever!!! Broke after a day :(",
)


class OnnxExportError(ValueError):
    """The model cannot be exported (PEFT layers left, not fp32, tracing failed)."""


def _model_inputs(model: Any, tokenizer: Any) -> list[str]:
    """The tokenizer outputs the model's ``forward`` takes, in a fixed order."""
    produced = set(tokenizer("probe")) & set(TOKENIZER_INPUTS)
    accepted = set(inspect.signature(model.forward).parameters)
    return [name for name in TOKENIZER_INPUTS if name in produced and name in accepted]


def _check_exportable(model: Any) -> None:
    names = [name for name, _ in model.named_modules()]
    if type(model).__name__.startswith("Peft") or any("lora_" in n for n in names):
        raise OnnxExportError("export a merged model: this one still has PEFT/LoRA layers")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        found = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        raise OnnxExportError(f"export an fp32 model: its weights are {found}")


class _Logits(torch.nn.Module):
    """The model with positional inputs (in ``names`` order) and logits as its one output."""

    def __init__(self, model: Any, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, args, strict=True)), return_dict=True)
        logits: torch.Tensor = out.logits
        return logits


def export_onnx(model: Any, tokenizer: Any, out_dir: Path, *, opset: int = 17) -> Path:
    """Trace the merged fp32 classifier ``model`` to ``out_dir/model.onnx``; returns its path.

    Inputs are what the tokenizer produces and the model takes (input_ids, attention_mask and
    token_type_ids where it has them), int64, with dynamic ``batch`` and ``sequence`` axes; the
    one output is ``logits`` [batch, labels]. The file is traced in a temporary folder inside
    ``out_dir`` and renamed into place: readers see the old file or the new one, never half.
    """
    _check_exportable(model)
    model = model.cpu().eval()
    names = _model_inputs(model, tokenizer)
    if "input_ids" not in names:
        raise OnnxExportError(f"{type(model).__name__} takes no input_ids")
    # Two texts of different lengths: the trace sees padding and a batch above one.
    sample = tokenizer(
        ["a short text", "a somewhat longer text to pad the other one"],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(sample[name].to(torch.int64) for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[OUTPUT_NAME] = {0: "batch"}
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".onnx-", suffix=".tmp"))
    try:
        target = staging / ONNX_FILE
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
            torch.onnx.export(
                # eval() on the wrapper too: export restores its mode, recursively
                _Logits(model, names).eval(),
                args,
                str(target),
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        if not target.is_file() or any(p.name != ONNX_FILE for p in staging.iterdir()):
            raise OnnxExportError("the export did not produce one self-contained model.onnx")
        final = out_dir / ONNX_FILE
        os.replace(target, final)
        return final
    except OnnxExportError:
        raise
    except Exception as err:  # noqa: BLE001 - tracing raises many kinds; say which model failed
        raise OnnxExportError(f"ONNX export of {type(model).__name__} failed: {err}") from err
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def predictions_from_logits(logits: np.ndarray, labels: list[str]) -> list[Prediction]:
    """Softmax over each row of ``logits``, as ``training.inference.classify`` reports it."""
    logits = logits.astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = shifted / shifted.sum(axis=-1, keepdims=True)
    return predictions_from_probabilities(probs.tolist(), labels)


CHUNK = 8  # texts per forward when a batch is split by length (see OnnxClassifier.logits)


class OnnxClassifier:
    """``model.onnx`` in an ONNX Runtime session (all graph optimisations, one intra-op thread
    per core unless ``threads`` says otherwise; CUDA when ``device`` is cuda and ORT has it).

    ``spin``: whether idle intra-op threads busy-wait for the next run: faster on cores of its
    own (one text p50 2.9 ms vs 4.2 on 2 quiet cores), slower on cores shared with other busy
    work (49 ms vs 22 on a loaded 2-core machine). The service's setting is serving.onnx_spin."""

    def __init__(
        self,
        path: Path,
        tokenizer: Any,
        *,
        threads: int | None = None,
        device: str = "cpu",
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=_providers(device))
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = set(self.input_names) - set(TOKENIZER_INPUTS)
        if unknown:
            raise OnnxExportError(f"{path}: unexpected model inputs {sorted(unknown)}")
        self.tokenizer = tokenizer
        self.providers = self.session.get_providers()

    def logits(self, texts: list[str], max_length: int) -> np.ndarray:
        """Logits of ``texts`` in their order. A large batch runs as chunks of similar length
        (sorted by token count, each padded to its own longest): a micro-batch of 32 mixed
        requests then pads far less than one padded to its longest text."""
        if len(texts) <= CHUNK:
            return self._forward(texts, max_length)
        lengths = [
            len(ids)
            for ids in self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        ]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out: np.ndarray | None = None
        for start in range(0, len(order), CHUNK):
            chunk = order[start : start + CHUNK]
            part = self._forward([texts[i] for i in chunk], max_length)
            if out is None:
                out = np.empty((len(texts), part.shape[1]), dtype=part.dtype)
            out[chunk] = part
        assert out is not None
        return out

    def _forward(self, texts: list[str], max_length: int) -> np.ndarray:
        """One forward pass over ``texts``, padded to the longest (as ``classify`` does)."""
        encoded = self.tokenizer(
            texts, truncation=True, max_length=max_length, padding=True, return_tensors="np"
        )
        feed = {name: encoded[name].astype(np.int64, copy=False) for name in self.input_names}
        out: np.ndarray = self.session.run([OUTPUT_NAME], feed)[0]
        return out

    def classify(self, texts: list[str], labels: list[str], max_length: int) -> list[Prediction]:
        """Like :func:`loralab.training.inference.classify`, from the ONNX model."""
        return predictions_from_logits(self.logits(texts, max_length), labels)


@dataclass(frozen=True)
class Agreement:
    """ONNX vs PyTorch on the same texts."""

    texts: int
    labels_equal: int
    max_probability_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.labels_equal == self.texts and self.max_probability_diff <= self.tolerance

    def describe(self) -> str:
        return (
            f"{self.labels_equal}/{self.texts} labels equal, max probability difference "
            f"{self.max_probability_diff:.2e} (tolerance {self.tolerance:.0e})"
        )


def check_agreement(
    model: Any,
    tokenizer: Any,
    onnx: OnnxClassifier,
    labels: list[str],
    max_length: int,
    texts: tuple[str, ...] | list[str] = AGREEMENT_TEXTS,
    *,
    tolerance: float = 1e-3,
    device: str = "cpu",
) -> Agreement:
    """Classify ``texts`` with the PyTorch ``model`` and with ``onnx`` (each text alone and all
    in one padded batch); labels must be identical and probabilities within ``tolerance``."""
    texts = list(texts)
    batches = [[t] for t in texts] + [texts]
    equal = total = 0
    worst = 0.0
    for batch in batches:
        reference = classify(model, tokenizer, labels, batch, device, max_length)
        got = onnx.classify(batch, labels, max_length)
        for ref, new in zip(reference, got, strict=True):
            total += 1
            equal += ref.label == new.label
            for name in labels:
                worst = max(worst, abs(ref.probabilities[name] - new.probabilities[name]))
    return Agreement(total, equal, worst, tolerance)
