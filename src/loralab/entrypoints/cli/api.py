"""`loralab api`: the platform API under uvicorn, in one or more processes on one port.

The processes share everything that must be shared (the database, the rate limits and sign-in
lockouts in Redis, the audit chain's lock, the metrics of ``/metrics``); each holds its own
resident prediction models. The signing secret and the database are checked here, once, before
any process starts: a bad setting ends with one line instead of N crashing workers that
uvicorn would start again and again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from loralab.entrypoints.cli.common import console, err_console

if TYPE_CHECKING:
    from loralab.settings import Settings

APP = "loralab.entrypoints.api.main:app"
WORKERS_HELP = (
    "API processes on this port (api.workers; default 1). They share limits, lockouts and "
    "metrics through Redis, the database and a metrics folder. The embedded SQLite database "
    "works with several processes on one machine (WAL: writes take turns on its one lock, so "
    "more processes add no write throughput); use PostgreSQL for API processes on several "
    "machines."
)


def api(
    host: Annotated[str | None, typer.Option(help="Bind address (api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (api.port).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help=WORKERS_HELP)] = None,
) -> None:
    """Serve the platform API (sign-in, jobs, datasets, models, audit, predictions)."""
    import contextlib

    import uvicorn

    from loralab.observability.logs import configure_logging
    from loralab.observability.metrics import shared_metrics_dir
    from loralab.settings import load_settings

    settings = load_settings()
    configure_logging(settings, "api")
    count = workers or settings.api.workers
    bind, at = host or settings.api.host, port or settings.api.port
    _prepare(settings)
    database = "PostgreSQL" if settings.db_url.startswith("postgres") else "SQLite"
    console.print(
        f"[bold]loralab api[/bold] on http://{bind}:{at}  (docs: /docs)  "
        f"{count} process{'es' if count > 1 else ''}, database {database}"
    )
    shared = shared_metrics_dir() if count > 1 else contextlib.nullcontext()
    with shared:
        # proxy headers off: the client address is the peer, unless api.trusted_proxies says
        uvicorn.run(
            APP, host=bind, port=at, workers=count, proxy_headers=False,
            log_level="info", access_log=False, log_config=None,
        )  # fmt: skip


def _prepare(settings: Settings) -> None:
    """Refuse a weak signing secret and prepare the database (migrations, card import) once,
    before the workers start (each does it again, finding nothing to do)."""
    from loralab.bootstrap import prepare_database
    from loralab.users.tokens import check_secret

    try:
        check_secret(settings.auth)
        prepare_database(settings)
    except ValueError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}")
        raise typer.Exit(2) from None
    except Exception as err:  # noqa: BLE001 - an unreachable database: one line, not a trace
        err_console.print(f"[bold red]error:[/bold red] the database is not usable: {err}")
        raise typer.Exit(2) from None
