"""`loralab export REF --format merged|onnx|adapter --out DIR` (thin) and model references."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loralab.entrypoints.cli.common import console, guard, safe
from loralab.errors import InvalidInput

if TYPE_CHECKING:
    from loralab.settings import Settings
    from loralab.training.runs import RunPaths

REF_HELP = "NAME@production, NAME@staging, NAME@VERSION, a run id (or unique prefix) or 'latest'."
FORMAT_HELP = (
    "merged: a plain transformers model (safetensors + tokenizer + label map); "
    "onnx: an ONNX model + tokenizer + label map + predict.py; "
    "adapter: the PEFT adapter (+ head) and a README naming its base model."
)


def resolve_run(settings: Settings, ref: str) -> RunPaths:
    """The run folder a model reference means: ``NAME@production``, ``NAME@staging``,
    ``NAME@VERSION``, ``NAME@latest``, a run id (or unique prefix) or ``latest`` (the newest
    finished run). The same resolution as the prediction service's."""
    if ref.strip() == "latest":
        from loralab.experiments import service

        return service.latest_run(settings)
    from loralab.serving.resolve import ModelResolver

    return ModelResolver(settings).resolve(ref).run


def export_command(
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to create (must not exist, or be empty).")
    ],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "merged",
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing non-empty --out folder.")
    ] = False,
) -> None:
    """Export a trained model for use without loralab (transformers, PEFT or ONNX Runtime)."""
    from loralab.entrypoints.cli.main import _quiet_libraries
    from loralab.settings import load_settings
    from loralab.training.export import FORMATS

    if fmt not in FORMATS:
        guard(lambda: _invalid(f"--format {fmt!r} is not one of {', '.join(FORMATS)}"))
    _quiet_libraries()
    settings = load_settings()
    run = guard(lambda: resolve_run(settings, ref))
    written = guard(lambda: _export(run, fmt, out, force, ref))
    console.print(f"exported {safe(ref)} ({fmt}) to [cyan]{safe(written)}[/cyan]")
    for path in sorted(written.iterdir()):
        console.print(f"  {safe(path.name)}{'/' if path.is_dir() else ''}")


def _invalid(message: str) -> None:
    raise InvalidInput(message)


def _export(run: RunPaths, fmt: str, out: Path, force: bool, ref: str) -> Path:
    from loralab.training.export import ExportError, export_run

    try:
        return export_run(run, fmt, out, force=force, ref=ref)
    except ExportError as err:
        raise InvalidInput(str(err)) from None
