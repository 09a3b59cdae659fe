"""Where studies live: Optuna's RDB storage beside the project's database, never inside its schema.

Optuna creates its own tables (``studies``, ``trials``, ...) and runs its own Alembic, whose
``alembic_version`` table would collide with the project's. So its tables go where the project's
migrations never look: on PostgreSQL a schema of their own (``optuna``, reached through the
connection's ``search_path``), on SQLite a file beside the project's database
(``loralab.db`` -> ``loralab-sweeps.db``). Every worker that points at the same database URL
shares the studies, so a sweep can be resumed and run by several workers at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loralab.errors import InvalidInput
from loralab.infra.db import normalise_url
from loralab.training.files import file_lock

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

SCHEMA = "optuna"
CREATE_LOCK_KEY = 7_301_101  # a PostgreSQL advisory lock key, beside infra.locks' keys
HEARTBEAT_SECONDS = 60  # a trial whose worker is silent this long ...
GRACE_SECONDS = 180  # ... and then this long is failed, so resumed sweeps do not wait on it
_cache: dict[str, RDBStorage] = {}
_lock = threading.Lock()


def sweeps_url(db_url: str) -> str:
    """The study database for the project's ``db_url`` (see the module docstring)."""
    url = make_url(normalise_url(db_url))
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise InvalidInput("db.url: sweeps need a database on disk, not in memory")
        path = Path(url.database)
        return str(url.set(database=str(path.with_name(f"{path.stem}-sweeps{path.suffix}"))))
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Processes opening a fresh study database at once race in Optuna's ``create_all``
    (SQLite: "table ... already exists"; PostgreSQL: a unique violation in pg_type): they take
    turns, and on PostgreSQL the ``optuna`` schema is created under the same lock."""
    if url.startswith("postgresql"):
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": CREATE_LOCK_KEY})
                conn.commit()
                try:
                    conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
                    conn.commit()
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CREATE_LOCK_KEY})
                    conn.commit()
        finally:
            engine.dispose()
    else:
        path = Path(make_url(url).database or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(f"{path.name}.create-lock")):
            yield


def study_storage(db_url: str, *, heartbeat: bool = False) -> RDBStorage:
    """Optuna's storage for the project's database (one per URL and process).

    ``heartbeat``: for workers that run trials here (``Study.optimize``): a trial whose worker
    died is failed after its heartbeat stops, instead of counting as running forever."""
    import optuna

    url = sweeps_url(db_url)
    key = f"{heartbeat}:{url}"
    with _lock:
        if key in _cache:
            return _cache[key]
        if url.startswith("postgresql"):
            kwargs: dict[str, object] = {
                "pool_pre_ping": True,
                "connect_args": {"options": f"-csearch_path={SCHEMA}"},
            }
        else:
            kwargs = {"connect_args": {"timeout": 30}}
        with _creation_lock(url):
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS if heartbeat else None,
                grace_period=GRACE_SECONDS if heartbeat else None,
            )
        _cache[key] = storage
        return storage
