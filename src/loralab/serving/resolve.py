"""Which trained model a request means: ``NAME@production``, ``NAME@staging``, ``NAME@VERSION``
or a run id, resolved to the run folder that holds its adapter.

Stages come only from the registry's stage store (``NAME@production`` is the version the
``production`` alias names). Answers are cached until a card or a stage changes (the store's
stamp), so a promotion is seen by the next request, without a restart, and an Archived version
is never reached through an alias.

A version whose run is not under this machine's results home is served, with shared artifacts
on (``mlflow.shared_artifacts``), from the version cache: its run-shaped folder fetched once
from the artifact store (``infra.artifacts.VersionCache``), checked against its manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from loralab.errors import InvalidInput, NotFound
from loralab.infra.artifacts import VersionCache, shared_artifacts_on
from loralab.registry.cards import ModelCard, Stage, version_number
from loralab.registry.pyfunc import RUN_ARTIFACT
from loralab.registry.service import RegistryService
from loralab.settings import Settings
from loralab.training.runs import RunNotFound, RunPaths, find_run, list_runs, read_state

REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}(@[A-Za-z0-9]{1,32})?$")


@dataclass(frozen=True)
class ModelHandle:
    """One servable model version: where its files are and what it predicts."""

    key: str  # "NAME@VERSION", or "run:<run id>" for an unregistered run
    run: RunPaths
    base_model: str
    language: str  # of the data it was trained on (not the base model's)
    labels: tuple[str, ...]
    max_length: int
    stage: str | None = None
    pooling: str = "cls"  # how it reads a sentence (model_info; runs before pooling: cls)

    @property
    def base_name(self) -> str:
        """The base model as users see it: a local folder shows as its name, never its path."""
        local = Path(self.base_model).is_absolute() or self.base_model.startswith((".", "~"))
        return Path(self.base_model).name if local else self.base_model

    @property
    def group(self) -> tuple[str, int, str]:
        """Versions with the same base model, label count and pooling share one resident base
        (the pooling hooks sit on the base, so a cls and a mean adapter cannot share it)."""
        return (self.base_model, len(self.labels), self.pooling)


class ModelResolver:
    """Turns model references into :class:`ModelHandle` objects."""

    def __init__(self, settings: Settings, registry: RegistryService | None = None) -> None:
        self.settings = settings
        self.registry = registry or RegistryService(settings)
        self._cache: dict[str, tuple[tuple[int, int], ModelHandle]] = {}
        self._stages: dict[str, tuple[tuple[int, int], dict[str, Stage]]] = {}
        self._versions: VersionCache | None = None

    def _stamp(self) -> tuple[int, int]:
        """Changes whenever a card or a stage changes."""
        return (self.registry.store.stamp(), self.registry.stage_store.stamp())

    def resolve(self, ref: str) -> ModelHandle:
        """``NAME@production`` | ``NAME@staging`` | ``NAME@VERSION`` | a run id (or prefix).

        Answers are cached until a card or a stage changes (any promotion or archive does) or
        the folder they name is gone (a fetched version evicted from, or wiped with, the cache).
        """
        stamp = self._stamp()
        cached = self._cache.get(ref)
        if cached is not None and cached[0] == stamp and cached[1].run.model_info.is_file():
            return cached[1]
        try:
            handle = self._resolve(ref)
        except NotFound:
            # a miss is never answered from a stamp cached in this process: a version that
            # another machine registered or promoted a moment ago is found by this request
            self.registry.store.forget_stamp()
            fresh = self._stamp()
            if fresh == stamp:
                raise
            stamp, handle = fresh, self._resolve(ref)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[ref] = (stamp, handle)
        return handle

    def stages_of(self, name: str) -> dict[str, Stage]:
        """Version -> stage of a registered model, from the stage store (cached like resolve)."""
        stamp = self._stamp()
        cached = self._stages.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        stages = self.registry.stage_store.stages(name)
        if len(self._stages) > 1024:
            self._stages.clear()
        self._stages[name] = (stamp, stages)
        return stages

    def _resolve(self, ref: str) -> ModelHandle:
        ref = ref.strip()
        if not REF_PATTERN.match(ref):
            raise InvalidInput(
                f"model {ref[:80]!r}: use NAME@production, NAME@staging, NAME@VERSION or a run id"
            )
        if "@" not in ref:
            return self._by_run(ref)
        name, tag = ref.split("@", 1)
        cards = {c.version: c for c in self.registry.index().cards if c.name == name}
        if not cards:
            raise NotFound(f"no registered model {name!r}")
        card = self._pick(name, tag, cards)
        return self._handle(card, self.stages_of(name).get(card.version))

    def _pick(self, name: str, tag: str, cards: dict[str, ModelCard]) -> ModelCard:
        lowered = tag.lower()
        if lowered in {"production", "staging"}:
            store = self.registry.stage_store
            stage = Stage.PRODUCTION if lowered == "production" else Stage.STAGING
            version = store.production(name) if lowered == "production" else store.staging(name)
            if version is None:
                raise NotFound(f"{name} has no {stage.value} version")
            if version not in cards:
                raise NotFound(f"{name}@{version} is in {stage.value} but has no model card")
            return cards[version]
        if lowered == "latest":
            stages = self.stages_of(name)
            live = [v for v in cards if stages.get(v) is not Stage.ARCHIVED]
            if not live:
                raise NotFound(f"{name} has only archived versions")
            return cards[max(live, key=int)]
        version = version_number(tag)
        if version is not None and version in cards:
            return cards[version]
        raise NotFound(f"no version {tag!r} of model {name!r}")

    def _handle(self, card: ModelCard, stage: Stage | None) -> ModelHandle:
        """The version's run folder: under the results home, else (shared artifacts on) its
        copy fetched into the version cache."""
        run_id = card.tags.get("loralab.run_id")
        run = self._local_run(run_id) if run_id else None
        if run is None and shared_artifacts_on(self.settings):
            run = self._fetched(card)
        if run is None and not run_id:
            raise NotFound(f"{card.ref} has no local run (tag loralab.run_id) to serve from")
        if run is None:
            raise NotFound(f"{card.ref}: its run {run_id} is not under the results home")
        stage_name = stage.value if stage else None
        return _from_run(run, key=card.ref, stage=stage_name, language=card.language)

    def _local_run(self, run_id: str) -> RunPaths | None:
        try:
            return find_run(self.settings.storage.results_dir, run_id)
        except RunNotFound:
            return None

    def _fetched(self, card: ModelCard) -> RunPaths:
        """The version's files from the shared artifact store (MLflow run ``card.run_id``),
        fetched on first use and checked; a run-shaped folder."""
        if self._versions is None:
            self._versions = VersionCache.from_settings(self.settings)
        folder = self._versions.fetch(card.name, card.version, card.run_id, RUN_ARTIFACT)
        return RunPaths(folder)

    def _by_run(self, run_id: str) -> ModelHandle:
        try:
            run = find_run(self.settings.storage.results_dir, run_id)
        except RunNotFound as err:
            registered = self._card_of_run(run_id) if shared_artifacts_on(self.settings) else None
            if registered is not None:  # trained on another machine: serve its version
                return self._resolve(registered.ref)
            raise NotFound(str(err)) from None
        registered = read_state(run).get("registered_model")
        if registered:
            return self._resolve(str(registered))
        return _from_run(run, key=f"run:{run.run_id}", stage=None)

    def _card_of_run(self, run_id: str) -> ModelCard | None:
        """The newest version registered from the loralab run ``run_id`` (full id)."""
        cards = [c for c in self.registry.index().cards if c.tags.get("loralab.run_id") == run_id]
        return max(cards, key=lambda c: int(c.version)) if cards else None

    def default_ref(self, experiment: str | None = None) -> str:
        """What ``make serve`` serves: the Production version of the newest registered model
        (or of ``experiment``'s model), else its newest live version, else the best finished run.
        """
        if self.settings.serving.default_model and experiment is None:
            return self.settings.serving.default_model
        cards = self.registry.index().cards
        if experiment is not None:
            cards = [c for c in cards if experiment in {c.name, c.tags.get("experiment")}]
        if not cards:  # nothing registered: an unregistered run is all there is
            return self._best_run(experiment)
        newest_first = sorted(cards, key=lambda c: c.created_at, reverse=True)
        live = (
            c for c in newest_first if self.stages_of(c.name).get(c.version) is not Stage.ARCHIVED
        )
        newest = next(live, None)
        if newest is None:  # never fall back to an archived version
            raise NotFound("every registered version is archived: promote one to serve it")
        production = Stage.PRODUCTION in self.stages_of(newest.name).values()
        return f"{newest.name}@production" if production else f"{newest.name}@latest"

    def _best_run(self, experiment: str | None) -> str:
        runs = [
            r
            for r in list_runs(self.settings.storage.results_dir)
            if (experiment is None or r.experiment == experiment) and r.adapter.is_dir()
        ]
        if not runs:
            where = f" of experiment {experiment!r}" if experiment else ""
            raise NotFound(f"no trained model{where} yet: train one with `make demo`")
        if experiment is None:
            return runs[0].run_id
        return max(runs, key=lambda r: read_state(r).get("accuracy") or 0.0).run_id


def _from_run(
    run: RunPaths, key: str, stage: str | None, language: str | None = None
) -> ModelHandle:
    """The handle of a run's saved model; ``language``: the data's, as its card says (an
    unregistered run: as its state records it; runs from before that: the base model's)."""
    if not run.model_info.is_file() or not run.adapter.is_dir():
        raise NotFound(f"run {run.run_id} has no saved model (did it finish?)")
    info = json.loads(run.model_info.read_text(encoding="utf-8"))
    recorded = read_state(run).get("data_language") if language is None else language
    return ModelHandle(
        key=key,
        run=run,
        base_model=str(info["base_model"]),
        language=str(recorded or info.get("language", "")),
        labels=tuple(str(x) for x in info["labels"]),
        max_length=int(info["max_length"]),
        stage=stage,
        pooling=str(info.get("pooling", "cls")),  # runs saved before pooling existed: [CLS]
    )
