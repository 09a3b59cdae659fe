"""The SQL of a job submit, built once per process with bind parameters.

``POST /train`` is the platform's busiest write. Building its statements per request (an
INSERT ... SELECT of eleven typed values, the owner's lock, the ``published_at`` stamp, the
queue position) and computing their cache keys cost more Python than running them; built once,
each request only binds its values. The statements are Core statements on the tables, so a
dict of values is one row's parameters, never an ORM bulk insert.
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)

from loralab.infra.db import Job, User, UTCDateTime
from loralab.jobs import states

JOBS = cast(Table, Job.__table__)
USERS = cast(Table, User.__table__)

# the columns a submit writes, and the type each value is bound with
SUBMITTED: dict[str, Any] = {
    "id": String,
    "owner_id": Integer,
    "state": String,
    "config": JSON,
    "model_name": String,
    "queue": String,
    "attempts": Integer,
    "cancel_requested": Boolean,
    "progress": JSON,
    "sweep_id": String,
    "sweep_trial": Integer,
    "created_at": UTCDateTime(),
    "updated_at": UTCDateTime(),
}


@cache
def insert_within_limit() -> Insert:
    """INSERT the job row (``SUBMITTED`` values) only while its owner (``owner``) has fewer
    than ``limit`` active jobs, in one statement; RETURNING the id (no row: refused).

    RETURNING, not rowcount: an INSERT ... SELECT reports rowcount -1 on PostgreSQL whether it
    inserted or not, and a refused job read as queued.
    """
    jobs = JOBS
    active = (
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.owner_id == bindparam("owner"), jobs.c.state.in_(states.ACTIVE))
        .scalar_subquery()
    )
    values = [bindparam(name, type_=kind) for name, kind in SUBMITTED.items()]
    source = select(*values).where(active < bindparam("limit", type_=Integer))
    return insert(jobs).from_select(list(SUBMITTED), source).returning(jobs.c.id)


@cache
def lock_owner() -> Select[Any]:
    """Lock the owner's row (``owner``) until the transaction ends: submits of one user take
    turns, so the active-job count each one reads is current (PostgreSQL)."""
    return select(USERS.c.id).where(USERS.c.id == bindparam("owner")).with_for_update()


@cache
def stamp_published() -> Update:
    """``published_at`` = ``now`` for job ``job_id``, unless it was stamped already."""
    jobs = JOBS
    return (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"), jobs.c.published_at.is_(None))
        .values(published_at=bindparam("now", type_=UTCDateTime()))
    )


@cache
def queued_ahead() -> Select[Any]:
    """How many queued jobs of queue ``queue`` were created before job (``created``,
    ``job_id``): ties on the time go by id."""
    jobs = JOBS
    created = bindparam("created", type_=UTCDateTime())
    return (
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.queue == bindparam("queue"), jobs.c.state == states.QUEUED)
        .where(
            (jobs.c.created_at < created)
            | ((jobs.c.created_at == created) & (jobs.c.id < bindparam("job_id")))
        )
    )
