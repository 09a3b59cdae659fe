"""The ceiling for ``api_scale.py``: a bare FastAPI app whose ``POST /train`` validates the same
body and does one INSERT into a jobs-like table, nothing else (no sign-in, no limits, no audit,
no broker). Run by uvicorn::

    BARE_DB_URL=postgresql+psycopg://postgres@127.0.0.1:5432/DB \\
        uvicorn bare_train_app:app --app-dir bench --workers N

The table (``bare_jobs``) is created by the bench before the processes start.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from functools import cache

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, create_engine, text

TABLE = """
CREATE TABLE IF NOT EXISTS bare_jobs (
    id VARCHAR(36) PRIMARY KEY,
    owner_id INTEGER NOT NULL,
    state VARCHAR(20) NOT NULL,
    queue VARCHAR(16) NOT NULL,
    config JSON NOT NULL,
    progress JSON NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
)
"""
INSERT = text(
    "INSERT INTO bare_jobs (id, owner_id, state, queue, config, progress, created_at, updated_at)"
    " VALUES (:id, :owner, 'queued', 'cpu', :config, '{}', :now, :now)"
)


class TrainBody(BaseModel):
    """The fields the bench sends to the platform's POST /train."""

    model_config = ConfigDict(extra="forbid")
    train_file: str
    base_model: str
    labels: list[str] | None = None
    max_steps: int | None = None


app = FastAPI(title="bare POST /train")


@cache
def engine() -> Engine:
    """The pool of this process (the platform's engine settings: pre-ping, default pool)."""
    return create_engine(os.environ["BARE_DB_URL"], pool_pre_ping=True)


@app.post("/train", status_code=202)
def train(body: TrainBody) -> dict[str, str]:
    job_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc)
    with engine().begin() as conn:
        conn.execute(
            INSERT, {"id": job_id, "owner": 1, "config": json.dumps(body.model_dump()), "now": now}
        )
    return {"task_id": job_id, "state": "queued"}


@app.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "ok"}
