"""A small typed HTTP client for the platform API: what the web UI knows of loralab.

Every failure becomes one of three errors whose message is a sentence a user can read:
:class:`ApiUnavailable` (nothing answers), :class:`SignedOut` (401: the token expired or was
revoked) and :class:`ApiError` (any other refusal, with the field it names when there is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
Json = dict[str, Any]


class ApiProblem(Exception):
    """Base of the client's errors; ``str(err)`` is the sentence to show."""


class ApiUnavailable(ApiProblem):
    def __init__(self, base_url: str) -> None:
        super().__init__(f"the API at {base_url} is not answering; retrying shortly")
        self.base_url = base_url


class SignedOut(ApiProblem):
    """The API no longer accepts the token (expired, revoked, or none)."""


@dataclass
class ApiError(ApiProblem):
    message: str
    status: int
    field: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _issue_text(issue: Json) -> tuple[str, str | None]:
    """A pydantic validation issue as 'field: message', and the field it names."""
    loc = [str(p) for p in issue.get("loc", []) if p not in ("body", "query", "path")]
    field = loc[0] if loc else None
    message = str(issue.get("msg", "invalid value"))
    return (f"{'.'.join(loc)}: {message}" if loc else message), field


def error_of(response: httpx.Response) -> ApiError:
    """The API's refusal as a sentence, naming the field where the API names one."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    field = None
    if isinstance(detail, list) and detail:
        texts = [_issue_text(i) for i in detail if isinstance(i, dict)]
        message = "; ".join(t for t, _ in texts)
        field = texts[0][1] if texts else None
    elif isinstance(detail, str):
        message = detail
        head = detail.split(":", 1)[0]
        field = head if ":" in detail and head.isidentifier() else None
    else:
        message = f"the API refused the request (HTTP {response.status_code})"
    if response.status_code == 429 and "retry-after" in response.headers:
        message += f" (try again in {response.headers['retry-after']} s)"
    return ApiError(message, response.status_code, field)


class ApiClient:
    """The platform API over HTTP, signed in with ``token`` when one is given."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError:
            raise ApiUnavailable(self.base_url) from None
        if response.status_code == 401:
            raise SignedOut(
                "your session has ended (the token expired or was revoked): sign in again"
                if self.token
                else error_of(response).message
            )
        if response.status_code >= 400:
            raise error_of(response)
        return response.json()

    # -- account ---------------------------------------------------------------------------
    def login(self, username: str, password: str) -> Json:
        """``{"access_token", "expires_in", "user"}``; a wrong password is an ApiError."""
        try:
            body: Json = self._call(
                "POST", "/login", json={"username": username, "password": password}
            )
        except SignedOut as err:
            raise ApiError(str(err), 401, "password") from None
        return body

    def me(self) -> Json:
        return dict(self._call("GET", "/me"))

    def health(self) -> Json:
        return dict(self._call("GET", "/health"))

    def openapi(self) -> Json:
        return dict(self._call("GET", "/openapi.json"))

    # -- jobs ------------------------------------------------------------------------------
    def submit_job(self, fields: Json) -> Json:
        return dict(self._call("POST", "/train", json=fields))

    def jobs(
        self,
        state: str | None = None,
        user: str | None = None,
        limit: int = 100,
        everyone: bool = False,
    ) -> list[Json]:
        """Jobs, newest first: your own, ``user``'s or (``everyone``) all (admins)."""
        wanted = {"state": state, "user": user, "limit": limit, "everyone": everyone}
        params = {k: v for k, v in wanted.items() if v}
        return list(self._call("GET", "/tasks", params=params))

    def job(self, task_id: str) -> Json:
        return dict(self._call("GET", f"/task/{task_id}"))

    def job_metrics(self, task_id: str) -> Json:
        return dict(self._call("GET", f"/task/{task_id}/metrics"))

    def job_logs(self, task_id: str, tail: int = 50) -> Json:
        return dict(self._call("GET", f"/task/{task_id}/logs", params={"tail": tail}))

    def job_report(self, task_id: str) -> Json:
        return dict(self._call("GET", f"/task/{task_id}/report"))

    def catalog(self) -> Json:
        return dict(self._call("GET", "/catalog"))

    def estimate(self, fields: Json) -> Json:
        return dict(self._call("POST", "/train/estimate", json=fields))

    def cancel_job(self, task_id: str) -> Json:
        return dict(self._call("POST", f"/task/{task_id}/cancel"))

    # -- experiments -----------------------------------------------------------------------
    def runs(self) -> list[Json]:
        return list(self._call("GET", "/experiments"))

    def mlflow_run(self, run_id: str) -> Json:
        return dict(self._call("GET", f"/experiments/mlflow/{run_id}"))

    def mlflow_info(self) -> Json:
        return dict(self._call("GET", "/mlflow"))

    # -- datasets --------------------------------------------------------------------------
    def datasets(self) -> list[Json]:
        return list(self._call("GET", "/datasets"))

    def dataset(self, ref: str) -> Json:
        return dict(self._call("GET", f"/datasets/{ref}"))

    def dataset_diff(self, ref: str, base: str) -> Json:
        return dict(self._call("GET", f"/datasets/{ref}/diff", params={"base": base}))

    def dataset_plots(self, ref: str) -> Json:
        return dict(self._call("GET", f"/datasets/{ref}/plots"))

    def upload_dataset(
        self, name: str, filename: str, content: bytes, text_column: str, label_column: str
    ) -> Json:
        data = {"name": name, "text_column": text_column, "label_column": label_column}
        files = {"file": (filename, content)}
        return dict(self._call("POST", "/datasets", data=data, files=files))

    # -- models ----------------------------------------------------------------------------
    def search_models(self, **filters: Any) -> Json:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return dict(self._call("GET", "/models/search", params=params))

    def recommend(self, text: str, limit: int = 5) -> Json:
        return dict(self._call("POST", "/models/recommend", json={"text": text, "limit": limit}))

    def model_history(self, ref: str) -> Json:
        return dict(self._call("GET", f"/models/{ref}/history"))

    def transition(self, model: str, stage: str, reason: str, force: bool = False) -> Json:
        body = {"model": model, "stage": stage, "reason": reason, "force": force}
        return dict(self._call("POST", "/models/transition", json=body))

    def predict(self, texts: list[str], model: str | None) -> Json:
        body: Json = {"texts": texts}
        if model:
            body["model"] = model
        return dict(self._call("POST", "/predict/batch", json=body))

    # -- audit -----------------------------------------------------------------------------
    def audit_verify(self) -> Json:
        return dict(self._call("GET", "/audit/verify"))

    def audit(self, **filters: Any) -> Json:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return dict(self._call("GET", "/audit/logs", params=params))
