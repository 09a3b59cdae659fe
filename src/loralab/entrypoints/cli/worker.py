"""`loralab worker`: a Celery worker for the queues this machine's devices can serve."""

from __future__ import annotations

from typing import Annotated

import typer


def local_queues() -> list[str]:
    """cpu always; cuda and mps where torch sees that device."""
    import torch

    from loralab.training.devices import mps_available

    queues = ["cpu"]
    if torch.cuda.is_available():
        queues.append("cuda")
    if mps_available():
        queues.append("mps")
    return queues


def worker(
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues (cpu, cuda, mps). Empty: this machine's."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run training jobs from the queue (Redis at LORALAB_QUEUE__BROKER_URL)."""
    from loralab.entrypoints.worker.app import create_celery
    from loralab.observability.logs import configure_logging
    from loralab.settings import load_settings

    chosen = queues or ",".join(local_queues())
    settings = load_settings()
    configure_logging(settings, "worker")
    app = create_celery(settings)
    typer.echo(f"loralab worker: queues {chosen}, concurrency {concurrency}")
    app.worker_main(
        ["worker", "-Q", chosen, "--concurrency", str(concurrency), "--loglevel", loglevel]
    )
