"""`loralab serve` (the prediction service) and `loralab client` (call a running service)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from loralab.entrypoints.cli.common import console, err_console, guard
from loralab.settings import load_settings

client_app = typer.Typer(
    help="Call a running prediction service (loralab serve): health, predict.",
    no_args_is_help=True,
)


def serve(
    model: Annotated[
        str | None,
        typer.Option(help="NAME@production | NAME@staging | NAME@VERSION | run id."),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", "-e", help="Serve this experiment's model / best run."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (serving.port).")] = None,
    mode: Annotated[
        str | None, typer.Option(help="adapters (default) or merged (serving.mode).")
    ] = None,
) -> None:
    """Serve predictions over HTTP: the Production version of the newest model by default."""
    import uvicorn

    from loralab.entrypoints.api.serving_app import create_serving_app

    settings = load_settings()
    if mode is not None:
        if mode not in {"adapters", "merged"}:
            err_console.print("[bold red]error:[/bold red] --mode: use adapters or merged")
            raise typer.Exit(2)
        settings.serving.mode = mode
    from loralab.observability.logs import configure_logging

    configure_logging(settings, "serve")
    app = guard(lambda: create_serving_app(settings, model=model, experiment=experiment))
    bind, at = host or settings.serving.host, port or settings.serving.port
    console.print(f"[bold]loralab serve[/bold] on http://{bind}:{at}  (docs: /docs)")
    uvicorn.run(app, host=bind, port=at, log_level="info", access_log=False, log_config=None)


def _url(url: str | None) -> str:
    settings = load_settings()
    return (url or f"http://{settings.serving.host}:{settings.serving.port}").rstrip("/")


def _call(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=60)
    except httpx.HTTPError as err:
        err_console.print(f"[bold red]error:[/bold red] cannot reach {url}: {err} (make serve?)")
        raise typer.Exit(2) from None
    data = response.json() if response.content else {}
    if response.status_code >= 400:
        err_console.print(
            f"[bold red]error {response.status_code}:[/bold red] {data.get('detail', data)}"
        )
        raise typer.Exit(2)
    return data


@client_app.command("health")
def client_health(url: Annotated[str | None, typer.Option(help="Service URL.")] = None) -> None:
    """Is the service up, which model version is loaded, on which device (``/health/details``,
    with the observability.metrics_token when one is set)."""
    secret = load_settings().observability.metrics_token
    token = secret.get_secret_value() if secret else None
    console.print_json(json.dumps(_call("GET", f"{_url(url)}/health/details", token=token)))


@client_app.command("predict")
def client_predict(
    texts: Annotated[list[str], typer.Argument(help="One or more texts.")],
    model: Annotated[str | None, typer.Option(help="Model reference; default: served.")] = None,
    url: Annotated[str | None, typer.Option(help="Service URL.")] = None,
) -> None:
    """Classify texts with a running service and print the answers."""
    base = _url(url)
    for text in texts:
        body: dict[str, Any] = {"text": text}
        if model:
            body["model"] = model
        answer = _call("POST", f"{base}/predict", body)
        console.print(
            f"[bold]{answer['label_name']}[/bold] ({answer['probability']:.4f})  "
            f"{answer['model_version']}  {answer['latency_ms']:.1f} ms  [dim]{text[:80]}[/dim]"
        )
