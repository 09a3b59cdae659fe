"""Who may see, use and add to which dataset: one rule, used by every path that takes a name.

The rule (:func:`may_use`): a version registered by an operator from the CLI (no owner) is
shared with every user; a version uploaded through the API belongs to its uploader; admins see
everything. A dataset *name* has one owner, the owner of its first version: only that owner may
add versions to it (admins may add to any name; their version keeps the name's owner, so a
shared name stays shared and a user's stays theirs). So ``NAME@latest`` can never resolve to a
file someone else slipped under your name.

Every path that takes a dataset reference goes through :class:`DatasetAccess`: train (job
submit), show and list, upload to an existing name, recommend by dataset, and the model cards
that name the dataset a model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from loralab.datasets import service as datasets
from loralab.datasets.versioning import DatasetVersion, parse_ref
from loralab.errors import Conflict, LoralabError, NotFound
from loralab.identity import Actor
from loralab.infra.db import Database, DatasetRecord, User
from loralab.settings import Settings


def may_use(actor: Actor, owner_id: int | None) -> bool:
    """THE rule: shared (no owner), the actor's own, or the actor is an admin."""
    return owner_id is None or owner_id == actor.id or actor.is_admin


@dataclass(frozen=True)
class Ownership:
    """Owner ids of the uploaded versions of one name (CLI-registered versions have none)."""

    by_version: dict[str, int]

    def of(self, version: str) -> int | None:
        return self.by_version.get(version)


class DatasetAccess:
    """The dataset rule for one actor, over the data store and the ownership table."""

    def __init__(self, settings: Settings, db: Database, actor: Actor) -> None:
        self.settings = settings
        self.db = db
        self.actor = actor
        self._store = datasets.store_for(settings)

    def ownership(self, name: str) -> Ownership:
        with self.db.session() as session:
            rows = session.execute(
                select(DatasetRecord.version, DatasetRecord.owner_id).where(
                    DatasetRecord.name == name
                )
            )
            return Ownership({version: owner for version, owner in rows})

    def _recorded(self, name: str) -> list[DatasetVersion]:
        """Every version of ``name`` in the store; none for a name that is not valid."""
        try:
            return self._store.read_versions(name)
        except LoralabError:
            return []

    def versions(self, name: str) -> list[DatasetVersion]:
        """The versions of ``name`` the actor may use, oldest first."""
        found = self._recorded(name)
        if not found:
            return []
        owners = self.ownership(name)
        return [v for v in found if may_use(self.actor, owners.of(v.version))]

    def newest_of_each(self) -> list[DatasetVersion]:
        """The newest version of every name that the actor may use (what ``NAME@latest`` means
        for them): one ownership query for all names, not one per name."""
        with self.db.session() as session:
            rows = session.execute(
                select(DatasetRecord.name, DatasetRecord.version, DatasetRecord.owner_id)
            )
            owners = {(n, v): owner for n, v, owner in rows}
        newest: list[DatasetVersion] = []
        for name in self._store.names():
            found = self._recorded(name)
            newest += [v for v in found if may_use(self.actor, owners.get((name, v.version)))][-1:]
        return newest

    def resolve(self, ref: str) -> DatasetVersion:
        """The version ``ref`` names among those the actor may use (``latest``: the newest).

        NotFound with the same words whether it does not exist or is someone else's.
        """
        try:
            parsed = parse_ref(ref)
        except LoralabError:
            raise NotFound(f"no dataset {ref[:200]!r}") from None
        versions = self.versions(parsed.name)
        if parsed.version == "latest":
            matches = versions[-1:]
        else:
            matches = [
                v
                for v in versions
                if v.version == parsed.version or v.fingerprint.startswith(parsed.version)
            ]
        if len(matches) != 1:
            known = ", ".join(v.version for v in versions)
            hint = f" (versions you may use: {known})" if known and not matches else ""
            why = "is ambiguous" if matches else "not found"
            raise NotFound(f"no dataset {ref[:200]!r}: {why}{hint}")
        return matches[0]

    def name_owner(self, name: str) -> tuple[bool, int | None]:
        """(exists, owner id) of a dataset name: the owner of its first version."""
        found = self._recorded(name)
        if not found:
            return False, None
        return True, self.ownership(name).of(found[0].version)

    def check_add(self, name: str) -> int | None:
        """The owner a new version of ``name`` gets, or Conflict when the actor may not add to
        it (the same words for a shared name and another user's private one)."""
        exists, owner = self.name_owner(name)
        if not exists:
            return self.actor.id
        if self.actor.is_admin or (owner is not None and owner == self.actor.id):
            return owner
        raise Conflict(f"name: the dataset name {name[:128]!r} is taken; upload under another name")

    def sees_card_data(self, name: str, version: str | None) -> bool:
        """May the actor see that a model was trained on ``name`` (``version``)? Names that
        are not registered datasets (a file an operator trained on) are not private."""
        found = self._recorded(name)
        if not found:
            return True
        # no version: the name's rule, its first version's owner; one ownership query either way
        asked = found[0].version if version is None else version
        return may_use(self.actor, self.ownership(name).of(asked))

    def owner_names(self) -> dict[tuple[str, str], str]:
        """Username of the owner of every uploaded version."""
        with self.db.session() as session:
            rows = session.execute(
                select(DatasetRecord.name, DatasetRecord.version, User.username).join(
                    User, User.id == DatasetRecord.owner_id
                )
            )
            return {(n, v): u for n, v, u in rows}
