"""Model registry service: register, show, search, recommend, transition, history, reconcile.

The CLI calls it today; the API (``GET /models/search``, ``POST /models/recommend``,
``POST /models/transition``) calls the same methods later. Stages live in MLflow (version tag
``loralab.stage`` + ``production`` alias); the card folder mirrors them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from loralab.errors import Conflict, InvalidInput, NotFound
from loralab.registry.cards import (
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
from loralab.registry.stages import check_transition
from loralab.registry.store import CardStore
from loralab.settings import Settings

MAX_QUERY_CHARS = 1000
PRODUCTION_ALIAS = "production"
STAGING_ALIAS = "staging"


class ModelRegistry(Protocol):
    """What the service needs of MLflow (real: adapters.model_registry.MlflowModelRegistry)."""

    def register(self, name: str, run_id: str, artifact: str = "adapter") -> str: ...
    def get_version(self, name: str, version: str) -> Any:
        """An object with version, run_id, stage (the loralab.stage tag), aliases; or None."""

    def versions(self, name: str) -> list[Any]: ...
    def alias_target(self, name: str, alias: str) -> str | None: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def set_stage_tag(self, name: str, version: str, stage: str) -> None: ...
    def log_card(self, run_id: str, path: Any) -> None: ...


@dataclass(frozen=True)
class Recommendation:
    card: ModelCard
    score: float
    reasons: list[str]


@dataclass(frozen=True)
class DatasetRecommendation:
    results: list[Recommendation]
    starting_point: dict[str, Any] | None  # training settings of the best run on that data
    starting_point_from: str | None


@dataclass(frozen=True)
class TransitionResult:
    card: ModelCard
    from_stage: str | None
    to_stage: str
    archived: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    ref: str
    what: str
    old: str | None
    new: str | None


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
    ) -> None:
        self.settings = settings
        self.store = CardStore(settings.registry_card_dir)
        self._registry = registry
        self._embedder = embedder
        self._index: CardIndex | None = None
        self._stamp: int | None = None
        self._index_lock = threading.Lock()

    # -- wiring ---------------------------------------------------------------------------
    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            from loralab.infra.model_registry import MlflowModelRegistry

            self._registry = MlflowModelRegistry.from_settings(self.settings)
        return self._registry

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
    ) -> ModelCard:
        """Register a new version (in Staging) from a finished run and write its card."""
        draft: dict[str, Any] = {
            "name": name,
            "version": "1",  # placeholder: the card is checked before MLflow is touched
            "run_id": run_id,
            "base_model": base_model,
            "language": language,
            "task": task,
            "description": description
            or f"LoRA {task} model on {base_model} for labels {', '.join(labels)}",
            "labels": labels,
            "metrics": metrics,
            "tags": tags or {},
            "dataset": dataset,
            "lora": lora,
            "training": training,
            "created_by": created_by,
            "created_at": time.time(),
            "stage": Stage.STAGING.value,
            "embedding": [1.0] * 384,
        }
        checked = validate_card(draft)
        draft["embedding"] = self.embed_one(card_text(checked)).tolist()
        validate_card(draft)
        with self.store.lock(name):
            version = self.registry.register(name, run_id)
            draft["version"] = version
            card = validate_card(draft)
            self.registry.set_stage_tag(name, version, Stage.STAGING.value)
            self.registry.set_alias(name, STAGING_ALIAS, version)
            path = self.store.write(card)
            self._history(card.name, version, None, Stage.STAGING, created_by, "registered")
        self.registry.log_card(run_id, path)
        return card

    def add_card(self, card: ModelCard | dict[str, Any]) -> ModelCard:
        """Store a ready card (imports, benchmarks, tests); refuses to overwrite one."""
        checked = validate_card(card if isinstance(card, dict) else card.model_dump())
        if self.store.exists(checked.name, checked.version):
            raise Conflict(f"{checked.ref} already has a card")
        self.store.write(checked)
        return checked

    # -- reading --------------------------------------------------------------------------
    def get_card(self, ref: str) -> ModelCard:
        name, version = parse_ref(ref)
        return self.store.read(name, version)

    def search(self, query: SearchQuery) -> Page:
        return self.index().search(query)

    def history(self, name: str) -> list[dict[str, Any]]:
        entries = self.store.history(name)
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

    def recommend_similar(self, ref: str, limit: int = 5) -> list[Recommendation]:
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
            if other.dataset.name == card.dataset.name:
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
    ) -> DatasetRecommendation:
        """Models trained on the most similar data, and the settings of the best run there.

        Score: 1.0 for the same data (fingerprint); otherwise 0.5 x cosine(card, dataset text)
        + 0.3 x label overlap (Jaccard) + 0.2 if the dataset name matches.
        """
        check_limit(limit)
        if not name or not name.strip():
            raise InvalidInput("give a dataset name or NAME@VERSION")
        label_set = set(labels or [])
        text = f"Dataset: {name}. Labels: {', '.join(sorted(label_set))}."
        vector = self.embed_one(text)
        index = self.index()
        if not index.cards:
            return DatasetRecommendation([], None, None)
        cosines = index.scores(vector)
        scored: list[tuple[float, int, list[str]]] = []
        for i, card in enumerate(index.cards):
            reasons: list[str] = []
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
        return DatasetRecommendation(results, start, best.ref if best else None)

    def recommend_for_registered_dataset(self, ref: str, limit: int = 5) -> DatasetRecommendation:
        """As recommend_for_dataset, for a registered dataset ``NAME@VERSION`` (or NAME@latest)."""
        from loralab.datasets.service import show_version

        version = show_version(self.settings, ref)
        return self.recommend_for_dataset(
            version.name, sorted(version.label_counts), version.fingerprint, limit
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
    def _registry_stage(self, name: str, version: str, production: str | None) -> Stage | None:
        if production == version:
            return Stage.PRODUCTION
        found = self.registry.get_version(name, version)
        if found is None:
            raise NotFound(f"{name}@{version} is not in the MLflow model registry")
        if found.stage is None:
            return None
        stage = parse_stage(found.stage)
        # a Production tag without the alias is stale: the alias is the truth
        return Stage.ARCHIVED if stage is Stage.PRODUCTION else stage

    def _history(
        self,
        name: str,
        version: str,
        old: Stage | None,
        new: Stage,
        user: str,
        reason: str,
    ) -> None:
        self.store.append_history(
            name,
            {
                "model": name,
                "version": version,
                "from": old.value if old else None,
                "to": new.value,
                "by": user,
                "at": time.time(),
                "reason": reason,
            },
        )

    def _gate(self, card: ModelCard, current: ModelCard | None, force: bool, reason: str) -> None:
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
        with self.store.lock(name):
            card = self.store.read(name, version)
            production = self.registry.alias_target(name, PRODUCTION_ALIAS)
            current = self._registry_stage(name, version, production)
            check_transition(current, target)
            archived: list[str] = []
            note = reason.strip()
            if target is Stage.PRODUCTION:
                old = self.store.read(name, production) if production else None
                gated = current is not None and self.settings.registry.promotion_gate
                self._gate(card, old, force, note)
                if force and gated and old is not None:
                    note = f"gate overridden: {note}"
                self.registry.set_alias(name, PRODUCTION_ALIAS, version)
                self.registry.set_stage_tag(name, version, Stage.PRODUCTION.value)
                stale = {v.version for v in self.registry.versions(name) if v.stage == "Production"}
                for other in sorted(({production} | stale) - {None, version}, key=str):
                    assert other is not None
                    self._archive(name, other, user, f"replaced by {ref}")
                    archived.append(f"{name}@{other}")
            else:
                self.registry.set_stage_tag(name, version, target.value)
                if current is Stage.PRODUCTION:
                    self.registry.delete_alias(name, PRODUCTION_ALIAS)
            if target is Stage.STAGING:
                self.registry.set_alias(name, STAGING_ALIAS, version)
            elif self.registry.alias_target(name, STAGING_ALIAS) == version:
                self.registry.delete_alias(name, STAGING_ALIAS)
            updated = card.model_copy(update={"stage": target})
            self.store.write(updated)
            self._history(name, version, current, target, user, note)
        return TransitionResult(updated, current.value if current else None, target.value, archived)

    def _archive(self, name: str, version: str, user: str, reason: str) -> None:
        self.registry.set_stage_tag(name, version, Stage.ARCHIVED.value)
        if self.store.exists(name, version):
            card = self.store.read(name, version)
            self.store.write(card.model_copy(update={"stage": Stage.ARCHIVED}))
        self._history(name, version, Stage.PRODUCTION, Stage.ARCHIVED, user, reason)

    def reconcile(self, name: str | None = None) -> list[Change]:
        """Make every card's stage equal the registry's (and drop stale Production tags);
        report registry versions that have no card and cards the registry does not know."""
        names = sorted({c.name for c in self.store.all_cards()})
        if name is not None:
            if name not in names:
                raise NotFound(f"no registered model {name!r}")
            names = [name]
        changes: list[Change] = []
        for model in names:
            with self.store.lock(model):
                production = self.registry.alias_target(model, PRODUCTION_ALIAS)
                carded = {str(c.version) for c in self.store.all_cards() if c.name == model}
                for version in self.registry.versions(model):
                    if str(version.version) not in carded:  # a crash between MLflow and card
                        changes.append(
                            Change(f"{model}@{version.version}", "missing card", None, None)
                        )
                    if version.stage == "Production" and version.version != production:
                        self.registry.set_stage_tag(model, version.version, "Archived")
                        changes.append(
                            Change(
                                f"{model}@{version.version}",
                                "registry tag",
                                "Production",
                                "Archived",
                            )
                        )
                for card in [c for c in self.store.all_cards() if c.name == model]:
                    try:
                        stage = self._registry_stage(model, card.version, production)
                    except NotFound:
                        changes.append(Change(card.ref, "missing in registry", None, None))
                        continue
                    if stage is not None and stage is not card.stage:
                        self.store.write(card.model_copy(update={"stage": stage}))
                        changes.append(
                            Change(card.ref, "card stage", card.stage.value, stage.value)
                        )
        return changes


def dataset_ref(name: str, version: str | None, fingerprint: str | None) -> dict[str, Any]:
    return DatasetRef(name=name, version=version, fingerprint=fingerprint).model_dump()
