"""Model registry service: register, show, search, recommend, transition, history, reconcile.

The CLI (``loralab models ...``) and the API (``GET /models/search``, ``POST /models/recommend``,
``POST /models/transition``) call the same methods. Stages are read and changed only through a
:class:`~loralab.registry.stages.StageStore`. ``settings.registry_backend`` picks where cards
and stages live: files (the card folder, stages on MLflow aliases + version tags mirrored in it:
``registry.mlflow_stages``) or database (tables shared by every machine, MLflow and the card
folder following: ``registry.db_store``).

Who sees what (:func:`card_for`): every signed-in user may find and use every registered
version (sharing within the team is the point of a registry), but a card whose training data
the viewer may not see (another user's private upload) shows no dataset name, version or
fingerprint, no training settings and no dataset tags; a recommendation by dataset takes only a
dataset the viewer may use, and offers no starting settings taken from a card they may not read
in full. Reading methods take the viewer as a :class:`~loralab.datasets.access.DatasetAccess`;
None is the operator (CLI), who sees everything.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from loralab.errors import Conflict, InvalidInput, NotFound
from loralab.registry.cards import (
    EMBEDDING_DIM,
    DatasetRef,
    ModelCard,
    Stage,
    card_text,
    check_embedding,
    parse_ref,
    parse_stage,
    validate_card,
)
from loralab.registry.embeddings import Embedder, MiniLMEmbedder
from loralab.registry.search import CardIndex, Page, SearchQuery, check_limit
from loralab.registry.stages import Change, StageChange, StageStore, check_transition
from loralab.registry.store import CardStore
from loralab.settings import Settings

if TYPE_CHECKING:
    from loralab.datasets.access import DatasetAccess
    from loralab.infra.db import Database
    from loralab.registry.mlflow_stages import ModelRegistry

__all__ = ["Change", "RegistryService", "Recommendation", "Recommendations", "TransitionResult"]

MAX_QUERY_CHARS = 1000
HIDDEN_DATASET = "(private dataset)"


def sees_data(card: ModelCard, viewer: DatasetAccess | None) -> bool:
    """May ``viewer`` see which data ``card`` was trained on (None: the operator may)."""
    return viewer is None or viewer.sees_card_data(card.dataset.name, card.dataset.version)


def card_for(card: ModelCard, viewer: DatasetAccess | None) -> ModelCard:
    """THE model visibility rule: the card as ``viewer`` may see it (see the module text)."""
    if sees_data(card, viewer):
        return card
    tags = {k: v for k, v in card.tags.items() if "dataset" not in k.lower()}
    hidden = DatasetRef(name=HIDDEN_DATASET)
    return card.model_copy(update={"dataset": hidden, "training": {}, "tags": tags})


@dataclass(frozen=True)
class Recommendation:
    card: ModelCard
    score: float
    reasons: list[str]


@dataclass(frozen=True)
class Recommendations:
    """Ranked models; for a dataset question also the training settings of the best run on the
    top match's data (``starting_point``) and which version they come from."""

    results: list[Recommendation]
    starting_point: dict[str, Any] | None = None
    starting_point_from: str | None = None


@dataclass(frozen=True)
class TransitionResult:
    card: ModelCard
    from_stage: str | None
    to_stage: str
    archived: list[str] = field(default_factory=list)


def check_query_text(text: str) -> str:
    cleaned = (text or "").strip()
    if not cleaned:
        raise InvalidInput("the query text is empty")
    if len(cleaned) > MAX_QUERY_CHARS:
        raise InvalidInput(
            f"the query text has {len(cleaned)} characters; at most {MAX_QUERY_CHARS}"
        )
    return cleaned


def _unit(vector: np.ndarray) -> np.ndarray:
    """A usable unit vector, or InvalidInput (wrong dimension, NaN, all zeros)."""
    try:
        check_embedding(vector.reshape(-1).tolist())
    except ValueError as err:
        raise InvalidInput(f"bad embedding: {err}") from None
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class RegistryService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry | None = None,
        embedder: Embedder | None = None,
        stage_store: StageStore | None = None,
        db: Database | None = None,
    ) -> None:
        """``db``: the platform database for the database backend (``settings.registry_backend``);
        opened from ``settings.db_url`` when first needed if not given."""
        self.settings = settings
        self._db = db
        self._owns_db = db is None  # opened here: closed by close()
        self.store = self._card_store()
        self._registry = registry
        self._embedder = embedder
        self._stage_store = stage_store
        self._index: CardIndex | None = None
        self._stamp: int | None = None
        self._index_lock = threading.Lock()

    # -- wiring ---------------------------------------------------------------------------
    def _card_store(self) -> CardStore:
        """The card folder (files backend), or the database that exports to it."""
        if self.settings.registry_backend == "files":
            return CardStore(self.settings.registry_card_dir)
        from loralab.registry.db_store import DbCardStore

        # a prediction service asks for the stamp on every request: at most ~1 query a second
        ttl = min(self.settings.serving.refresh_seconds, 1.0)
        return DbCardStore(self._database, self.settings.registry_card_dir, stamp_ttl=ttl)

    def _database(self) -> Database:
        if self._db is None:
            from loralab.infra.db import Database

            self._db = Database(self.settings.db_url, self.settings.db.echo)
        return self._db

    def close(self) -> None:
        """Release the database connections this service opened itself (a service built per
        call, as a training run's registration is, must not leave its engine behind)."""
        if self._owns_db and self._db is not None:
            self._db.dispose()
            self._db = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            from loralab.infra.model_registry import MlflowModelRegistry
            from loralab.registry.pyfunc import packager

            # every version carries an MLflow pyfunc model (registry/pyfunc.py)
            self._registry = MlflowModelRegistry.from_settings(
                self.settings, packager(self.settings)
            )
        return self._registry

    @property
    def stage_store(self) -> StageStore:
        """The one place stages are read and changed, unless given: the database (database
        backend) or MLflow with card mirrors (files backend), MLflow following either way."""
        if self._stage_store is None:
            from loralab.registry.db_store import DbCardStore, DbStageStore
            from loralab.registry.mlflow_stages import MlflowStageStore

            if isinstance(self.store, DbCardStore):
                self._stage_store = DbStageStore(lambda: self.registry, self.store)
            else:
                self._stage_store = MlflowStageStore(lambda: self.registry, self.store)
        return self._stage_store

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = MiniLMEmbedder()
        return self._embedder

    def index(self) -> CardIndex:
        """The in-memory index, reloaded when the card folder changed."""
        with self._index_lock:
            stamp = self.store.stamp()
            if self._index is None or stamp != self._stamp:
                self._index = CardIndex(self.store.all_cards())
                self._stamp = stamp
            return self._index

    def embed_one(self, text: str) -> np.ndarray:
        vector = np.asarray(self.embedder.embed([text])[0], dtype=np.float32)
        return _unit(vector)

    # -- registration ---------------------------------------------------------------------
    def register_run(
        self,
        *,
        name: str,
        run_id: str,
        base_model: str,
        language: str,
        labels: list[str],
        metrics: dict[str, float],
        dataset: dict[str, Any],
        lora: dict[str, Any],
        training: dict[str, Any],
        created_by: str,
        task: str = "text-classification",
        description: str = "",
        tags: dict[str, str] | None = None,
        base_languages: list[str] | None = None,
    ) -> ModelCard:
        """Register a new version (in Staging) from a finished run and write its card.

        Bad input fails in the draft, before MLflow is touched; a crash after the MLflow step
        leaves a version without a card, which ``reconcile`` reports.
        """
        draft = _draft_card(
            {
                "name": name,
                "run_id": run_id,
                "base_model": base_model,
                "language": language,
                "base_languages": base_languages or [],
                "task": task,
                "description": description,
                "labels": labels,
                "metrics": metrics,
                "tags": tags or {},
                "dataset": dataset,
                "lora": lora,
                "training": training,
                "created_by": created_by,
            }
        )
        embedded = self._embed_card(draft)
        with self.stage_store.lock(name):
            version = self._register_version(name, run_id, created_by)
            card = self._write_card(embedded, version)
        self.registry.log_card(run_id, self.store.path_of(name, version))
        return card

    def _embed_card(self, draft: ModelCard) -> ModelCard:
        """The draft with the embedding of its text (a unit vector)."""
        vector = self.embed_one(card_text(draft)).tolist()
        return validate_card({**draft.model_dump(), "embedding": vector})

    def _register_version(self, name: str, run_id: str, by: str) -> str:
        """A new MLflow version of ``name`` from the run, put in Staging; its number."""
        version = self.registry.register(name, run_id)
        self.stage_store.set(name, version, Stage.STAGING, by, "registered")
        return version

    def _write_card(self, card: ModelCard, version: str) -> ModelCard:
        final = validate_card({**card.model_dump(), "version": version})
        self.store.write(final)
        return final

    def add_card(self, card: ModelCard | dict[str, Any]) -> ModelCard:
        """Store a ready card (imports, benchmarks, tests); refuses to overwrite one."""
        checked = validate_card(card if isinstance(card, dict) else card.model_dump())
        if self.store.exists(checked.name, checked.version):
            raise Conflict(f"{checked.ref} already has a card")
        self.store.write(checked)
        return checked

    # -- reading --------------------------------------------------------------------------
    def get_card(self, ref: str, viewer: DatasetAccess | None = None) -> ModelCard:
        name, version = parse_ref(ref)
        return card_for(self.store.read(name, version), viewer)

    def search(self, query: SearchQuery, viewer: DatasetAccess | None = None) -> Page:
        page = self.index().search(query)
        items = [card_for(card, viewer) for card in page.items]
        return Page(items, page.total, page.offset, page.limit)

    def history(self, name: str) -> list[StageChange]:
        """Every stage change of a registered model, oldest first."""
        entries = self.stage_store.history(name)
        if not entries and not any(c.name == name for c in self.index().cards):
            raise NotFound(f"no registered model {name!r}")
        return entries

    # -- recommendation -------------------------------------------------------------------
    def _ranked(
        self, vector: np.ndarray, limit: int, exclude: set[int] | None = None
    ) -> list[tuple[ModelCard, float]]:
        check_limit(limit)
        index = self.index()
        return [(index.cards[i], s) for i, s in index.top_similar(vector, limit, exclude)]

    def recommend(
        self,
        *,
        text: str | None = None,
        like: str | None = None,
        dataset: str | None = None,
        limit: int = 5,
        viewer: DatasetAccess | None = None,
    ) -> Recommendations:
        """Models for exactly one question: ``text`` (a need in words), ``like`` (models similar
        to NAME@VERSION) or ``dataset`` (models trained on the data most like a registered
        dataset NAME@VERSION, with a starting configuration)."""
        asked = {"text": text, "like": like, "dataset": dataset}
        given = [key for key, value in asked.items() if value is not None]
        if len(given) != 1:
            raise InvalidInput(
                "give exactly one of: text (a need in words), like (NAME@VERSION), "
                f"dataset (a registered NAME@VERSION); got {', '.join(given) or 'none'}"
            )
        if text is not None:
            found = Recommendations(self.recommend_text(text, limit))
        elif like is not None:
            found = Recommendations(self.recommend_similar(like, limit, viewer))
        else:
            found = self.recommend_for_registered_dataset(str(dataset), limit, viewer)
        return self._for_viewer(found, viewer)

    def _for_viewer(self, found: Recommendations, viewer: DatasetAccess | None) -> Recommendations:
        """Recommendations as ``viewer`` may see them: cards through :func:`card_for`, and no
        starting settings from a card whose data they may not see."""
        if viewer is None:  # the operator sees everything
            return found
        results = [replace(r, card=card_for(r.card, viewer)) for r in found.results]
        start, start_from = found.starting_point, found.starting_point_from
        if start_from is not None and not sees_data(self.get_card(start_from), viewer):
            start, start_from = None, None
        return Recommendations(results, start, start_from)

    def recommend_similar(
        self, ref: str, limit: int = 5, viewer: DatasetAccess | None = None
    ) -> list[Recommendation]:
        """Models like a given version (by card embedding), the version itself left out."""
        check_limit(limit)
        card = self.get_card(ref)
        index = self.index()
        own = index.by_ref.get(card.ref)
        vector = _unit(np.asarray(card.embedding, dtype=np.float32))
        out = []
        for other, score in self._ranked(vector, limit, {own} if own is not None else None):
            reasons = [f"cosine similarity {score:.3f} to {card.ref}"]
            if other.task.casefold() == card.task.casefold():
                reasons.append(f"same task ({other.task})")
            if other.language.casefold() == card.language.casefold():
                reasons.append(f"same language ({other.language})")
            if other.base_model == card.base_model:
                reasons.append(f"same base model ({other.base_model})")
            shared = sorted(set(other.labels) & set(card.labels))
            if shared:
                reasons.append(f"shared labels: {', '.join(shared)}")
            if other.dataset.name == card.dataset.name and sees_data(card, viewer):
                reasons.append(f"same dataset ({other.dataset.name})")
            out.append(Recommendation(other, round(score, 4), reasons))
        return out

    def recommend_text(self, need: str, limit: int = 5) -> list[Recommendation]:
        """Models for a free-text need; the text is embedded on the fly."""
        text = check_query_text(need)
        check_limit(limit)
        vector = self.embed_one(text)
        words = {w.strip(".,;:!?()\"'").casefold() for w in text.split()}
        words = {w for w in words if len(w) > 2}
        out = []
        for card, score in self._ranked(vector, limit):
            reasons = [f"cosine similarity {score:.3f} to the query"]
            haystack = {
                w.strip(".,;:!?()\"'").casefold()
                for w in (card_text(card) + " " + card.name).split()
            }
            hits = sorted(words & haystack)
            if hits:
                reasons.append(f"card mentions: {', '.join(hits[:8])}")
            out.append(Recommendation(card, round(score, 4), reasons))
        return out

    def recommend_for_dataset(
        self,
        name: str,
        labels: list[str] | None = None,
        fingerprint: str | None = None,
        limit: int = 5,
        language: str | None = None,
    ) -> Recommendations:
        """Models trained on the most similar data, and the settings of the best run there.

        Score: 1.0 for the same data (fingerprint); otherwise 0.5 x cosine(card, dataset text)
        + 0.3 x label overlap (Jaccard) + 0.2 if the dataset name matches. ``language`` (the
        data's): models trained on data in another language are left out.
        """
        check_limit(limit)
        if not name or not name.strip():
            raise InvalidInput("give a dataset name or NAME@VERSION")
        label_set = set(labels or [])
        text = f"Dataset: {name}. Labels: {', '.join(sorted(label_set))}."
        vector = self.embed_one(text)
        index = self.index()
        if not index.cards:
            return Recommendations([], None, None)
        cosines = index.scores(vector)
        scored: list[tuple[float, int, list[str]]] = []
        for i, card in enumerate(index.cards):
            reasons: list[str] = []
            if language and card.language.casefold() != language.casefold():
                continue
            if fingerprint and card.dataset.fingerprint == fingerprint:
                score = 1.0
                reasons.append(f"trained on the same data (fingerprint {fingerprint[:12]})")
            else:
                union = label_set | set(card.labels)
                jaccard = len(label_set & set(card.labels)) / len(union) if union else 0.0
                same_name = card.dataset.name == name
                score = 0.5 * float(cosines[i]) + 0.3 * jaccard + (0.2 if same_name else 0.0)
                reasons.append(f"cosine {float(cosines[i]):.3f} to the dataset description")
                if jaccard:
                    reasons.append(f"label overlap {jaccard:.2f}")
                if same_name:
                    reasons.append(f"same dataset name ({name}, another version)")
            scored.append((score, i, reasons))
        scored.sort(key=lambda t: (-t[0], t[1]))
        results = [Recommendation(index.cards[i], round(s, 4), r) for s, i, r in scored[:limit]]
        best = self._best_on_same_data(index.cards[scored[0][1]], index.cards)
        start = {"lora": best.lora.model_dump(), **best.training} if best else None
        return Recommendations(results, start, best.ref if best else None)

    def recommend_for_registered_dataset(
        self, ref: str, limit: int = 5, viewer: DatasetAccess | None = None
    ) -> Recommendations:
        """As recommend_for_dataset, for a registered dataset ``NAME@VERSION`` (or NAME@latest)
        that ``viewer`` may use (NotFound otherwise, as for one that does not exist)."""
        from loralab.datasets.service import show_version

        version = viewer.resolve(ref) if viewer is not None else show_version(self.settings, ref)
        language = version.report.get("language")  # stored with the version (older: none)
        return self.recommend_for_dataset(
            version.name,
            sorted(version.label_counts),
            version.fingerprint,
            limit,
            language if isinstance(language, str) and language != "unknown" else None,
        )

    def _best_on_same_data(self, top: ModelCard, cards: list[ModelCard]) -> ModelCard | None:
        metric = self.settings.registry.gate_metric

        def same(card: ModelCard) -> bool:
            if top.dataset.fingerprint:
                return card.dataset.fingerprint == top.dataset.fingerprint
            return card.dataset.name == top.dataset.name

        group = [c for c in cards if same(c)]
        return max(group, key=lambda c: (c.metrics.get(metric, float("-inf")), c.created_at))

    # -- stages ---------------------------------------------------------------------------
    def transition(
        self,
        ref: str,
        stage: str,
        user: str,
        reason: str = "",
        force: bool = False,
    ) -> TransitionResult:
        """Move a version to a stage. Production archives the previous Production.

        Allowed: new -> Staging, Staging -> Production, Staging -> Archived,
        Production -> Archived, Archived -> Staging. Everything is checked before any change.
        """
        name, version = parse_ref(ref)
        target = parse_stage(stage)
        if force and not reason.strip():
            raise InvalidInput("overriding the promotion gate needs a reason")
        with self.stage_store.lock(name):
            card = self.store.read(name, version)
            current = self.stage_store.get(name, version)
            check_transition(current, target)
            note = reason.strip()
            if target is Stage.PRODUCTION:
                note = self._check_gate(card, force, note)
            update = self.stage_store.set(name, version, target, user, note)
        updated = card.model_copy(update={"stage": target})
        return TransitionResult(
            updated, current.value if current else None, target.value, update.archived
        )

    def _check_gate(self, card: ModelCard, force: bool, note: str) -> str:
        """Conflict when the gate refuses ``card`` over the current Production; the history
        note (marked when ``force`` overrode the gate)."""
        production = self.stage_store.production(card.name)
        current = self.store.read(card.name, production) if production else None
        self._gate(card, current, force)
        if force and self.settings.registry.promotion_gate and current is not None:
            return f"gate overridden: {note}"
        return note

    def _gate(self, card: ModelCard, current: ModelCard | None, force: bool) -> None:
        if current is None or not self.settings.registry.promotion_gate or force:
            return
        same_data = (
            card.dataset.fingerprint == current.dataset.fingerprint
            if card.dataset.fingerprint and current.dataset.fingerprint
            else (card.dataset.name, card.dataset.version)
            == (current.dataset.name, current.dataset.version)
        )
        if not same_data:
            return
        metric = self.settings.registry.gate_metric
        new, old = card.metrics.get(metric), current.metrics.get(metric)
        if old is None:
            return
        if new is None or new < old:
            raise Conflict(
                f"promotion gate: {card.ref} has {metric} {new} < {old} of Production "
                f"{current.ref} on the same dataset version; override with --force and --reason"
            )

    def reconcile(self, name: str | None = None) -> list[Change]:
        """Let the stage store repair what drifted (cards, stale tags, aliases) after a crash or
        a hand edit; report registry versions without a card and cards it does not know."""
        names = sorted({c.name for c in self.store.all_cards()})
        if name is not None:
            if name not in names:
                raise NotFound(f"no registered model {name!r}")
            names = [name]
        return [change for model in names for change in self.stage_store.repair(model)]


def _draft_card(fields: dict[str, Any]) -> ModelCard:
    """A checked card in Staging, with a placeholder version and embedding (filled in later)."""
    description = fields["description"] or (
        f"LoRA {fields['task']} model on {fields['base_model']} for labels "
        f"{', '.join(fields['labels'])}"
    )
    return validate_card(
        {
            **fields,
            "description": description,
            "version": "1",
            "created_at": time.time(),
            "stage": Stage.STAGING.value,
            "embedding": [1.0] * EMBEDDING_DIM,
        }
    )


def dataset_ref(name: str, version: str | None, fingerprint: str | None) -> dict[str, Any]:
    return DatasetRef(name=name, version=version, fingerprint=fingerprint).model_dump()
