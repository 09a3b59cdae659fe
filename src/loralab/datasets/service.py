"""Dataset services: validate, register, list, show, diff and analyse datasets.

The CLI (``loralab data``) and the API (``/datasets``) call these. Sources are a file path or a
registered ``NAME@VERSION`` (``NAME@latest``). Errors are domain errors from
:mod:`loralab.errors`; a dataset that fails validation raises :class:`DatasetInvalid` (an
:class:`~loralab.errors.InvalidInput` that carries the report) and changes nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loralab.datasets.analysis import Profile, profile_rows, write_report
from loralab.datasets.tokens import token_meter, unknown_rate
from loralab.datasets.validation import (
    TokenCounter,
    UnknownCounter,
    ValidationLimits,
    ValidationOptions,
    ValidationReport,
    describe,
    validate_files,
)
from loralab.datasets.versioning import (
    CANONICAL_LABEL,
    CANONICAL_TEXT,
    DatasetDiff,
    DatasetStore,
    DatasetVersion,
    check_name,
    diff_rows,
    looks_like_ref,
    parse_ref,
    read_canonical,
)
from loralab.errors import InvalidInput
from loralab.settings import Settings
from loralab.training.config import TrainConfig
from loralab.training.reader import IssueLog, RecordReader

log = logging.getLogger("loralab.datasets")


class DatasetInvalid(InvalidInput):
    """The data has errors; ``report`` holds them all."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class DataSpec:
    """How to read a dataset and judge its length: columns, labels, tokenizer, max_length."""

    text_column: str = "text"
    label_column: str = "label"
    labels: tuple[str, ...] | None = None
    base_model: str = "minilm-l6"
    max_length: int = 128

    @classmethod
    def from_config(cls, config: TrainConfig) -> DataSpec:
        return cls(
            config.text_column,
            config.label_column,
            config.labels,
            config.base_model,
            config.max_length,
        )

    def options(self) -> ValidationOptions:
        return ValidationOptions(self.text_column, self.label_column, self.labels, self.max_length)


@dataclass(frozen=True)
class Registration:
    version: DatasetVersion
    created: bool  # False: this content was already a version of this name
    report: ValidationReport


@dataclass(frozen=True)
class TrainingData:
    """A training config with dataset refs resolved to stored files, and what was resolved."""

    config: TrainConfig
    report: ValidationReport
    versions: dict[str, DatasetVersion] = field(default_factory=dict)  # train / validation

    @property
    def tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        for role, version in self.versions.items():
            prefix = "dataset" if role == "train" else "validation_dataset"
            tags[prefix] = version.ref
            tags[f"{prefix}_version_fingerprint"] = version.fingerprint
        return tags


@dataclass(frozen=True)
class Analysis:
    summary: dict[str, Any]
    files: dict[str, Path]
    profile: Profile


def store_for(settings: Settings) -> DatasetStore:
    return DatasetStore(settings.dataset_store_dir)


def limits_for(settings: Settings) -> ValidationLimits:
    d = settings.datasets
    return ValidationLimits(
        d.max_rows, d.max_bytes, d.imbalance_ratio, d.truncation_warn_share, d.max_examples
    )


def token_counter(base_model: str) -> TokenCounter:
    """Token counts with the base model's tokenizer, in batches."""
    return token_meter(base_model).lengths


def _counter_or_note(base_model: str) -> tuple[TokenCounter, UnknownCounter | None]:
    """A counter and an unknown-token counter; where the tokenizer cannot load, a counter whose
    failure the report records."""
    try:
        meter = token_meter(base_model)
        return meter.lengths, meter.unknowns
    except Exception as err:  # noqa: BLE001 - any loading failure means "not measured"
        reason = f"tokenizer of {base_model!r} unavailable: {str(err).splitlines()[0][:200]}"

        def fail(texts: list[str]) -> list[int]:
            raise RuntimeError(reason)

        return fail, None


def resolve_source(settings: Settings, source: str | Path) -> tuple[Path, DatasetVersion | None]:
    """A path, or the stored copy of a ``NAME@VERSION`` ref (an existing file wins)."""
    text = str(source)
    if looks_like_ref(text) and not Path(text).exists():
        store = store_for(settings)
        version = store.resolve(parse_ref(text))
        return store.file_of(version), version
    return Path(text), None


def _resolve_pair(
    settings: Settings, train: str | Path, validation: str | Path | None, spec: DataSpec
) -> tuple[Path, Path | None, DataSpec, dict[str, DatasetVersion]]:
    train_path, train_version = resolve_source(settings, train)
    val_path, val_version = (None, None)
    if validation is not None:
        val_path, val_version = resolve_source(settings, validation)
    versions = {role: v for role, v in (("train", train_version), ("validation", val_version)) if v}
    if versions:
        canonical = (spec.text_column, spec.label_column) == (CANONICAL_TEXT, CANONICAL_LABEL)
        if validation is not None and len(versions) == 1 and not canonical:
            raise InvalidInput(
                "a registered dataset has the columns text/label; register the other file too "
                "(loralab data register) so both sides read the same columns"
            )
        spec = replace(spec, text_column=CANONICAL_TEXT, label_column=CANONICAL_LABEL)
    return train_path, val_path, spec, versions


def validate_dataset(
    settings: Settings,
    source: str | Path,
    spec: DataSpec | None = None,
    validation_file: str | Path | None = None,
    measure_tokens: bool = True,
) -> ValidationReport:
    """Validate a file or registered dataset (and a validation file): the full report."""
    spec = spec or DataSpec()
    train_path, val_path, spec, _ = _resolve_pair(settings, source, validation_file, spec)
    return _validate_pair(settings, train_path, val_path, spec, measure_tokens=measure_tokens)


def _validate_pair(
    settings: Settings,
    train_path: Path,
    val_path: Path | None,
    spec: DataSpec,
    *,
    measure_tokens: bool = True,
) -> ValidationReport:
    """The full report on resolved files, under the settings' limits (tokens measured unless
    told not to)."""
    counter, unknowns = _counter_or_note(spec.base_model) if measure_tokens else (None, None)
    return validate_files(
        train_path,
        val_path,
        spec.options(),
        limits_for(settings),
        counter,
        spec.base_model,
        unknowns,
    )


def _clean_rows(path: Path, spec: DataSpec, settings: Settings) -> Iterator[tuple[str, str]]:
    """Stripped (text, label) rows of a file that validated without errors."""
    limits = limits_for(settings)
    reader = RecordReader(
        path,
        spec.text_column,
        spec.label_column,
        IssueLog(1),
        max_rows=limits.max_rows,
        max_bytes=limits.max_bytes,
    )
    for record in reader:
        if record.text and record.text.strip() and record.label and record.label.strip():
            yield record.text.strip(), record.label.strip()


def register_dataset(
    settings: Settings,
    name: str,
    file: str | Path,
    *,
    user: str,
    spec: DataSpec | None = None,
) -> Registration:
    """Validate a file and store it as a new version of ``name`` (nothing stored on errors)."""
    check_name(name)
    spec = spec or DataSpec()
    path = Path(file)
    report = validate_dataset(settings, path, spec)
    if not report.ok:
        raise DatasetInvalid(f"{path.name} not registered: {report.summary()}", report)
    version, created = store_for(settings).add_version(
        name,
        _clean_rows(path, spec, settings),
        user=user,
        source=path.name,  # stored and shown: never a server path
        text_column=spec.text_column,
        label_column=spec.label_column,
        report=report.to_dict(),
    )
    log.info(
        "dataset %s %s (%s rows)", version.ref, "registered" if created else "exists", version.rows
    )
    return Registration(version, created, report)


def list_versions(settings: Settings, name: str) -> list[DatasetVersion]:
    """Every version of a dataset, oldest first (NotFound when the name has none)."""
    check_name(name)
    versions = store_for(settings).read_versions(name)
    if not versions:
        from loralab.errors import NotFound

        raise NotFound(f"no dataset named {name!r}")
    return versions


def list_datasets(settings: Settings) -> list[DatasetVersion]:
    """The latest version of every registered dataset."""
    store = store_for(settings)
    return [store.read_versions(n)[-1] for n in store.names() if store.read_versions(n)]


def show_version(settings: Settings, ref: str) -> DatasetVersion:
    return store_for(settings).resolve(parse_ref(ref))


def diff_versions(settings: Settings, old_ref: str, new_ref: str) -> DatasetDiff:
    """Rows added, removed and relabelled from one version to another."""
    store = store_for(settings)
    old, new = store.resolve(parse_ref(old_ref)), store.resolve(parse_ref(new_ref))
    return diff_rows(
        read_canonical(store.file_of(old)), read_canonical(store.file_of(new)), old.ref, new.ref
    )


def analyze_dataset(
    settings: Settings,
    source: str | Path,
    out_dir: Path,
    spec: DataSpec | None = None,
    tokenizers: list[str] | None = None,
) -> Analysis:
    """Profile a file or registered dataset; write PNG plots, profile.json and report.html."""
    spec = spec or DataSpec()
    path, version = resolve_source(settings, source)
    if version is not None:
        rows: Iterator[tuple[str, str]] = read_canonical(path)
    else:
        rows = _checked_rows(path, spec, settings)
    counters = {name: token_counter(name) for name in (tokenizers or [spec.base_model])}
    profile = profile_rows(rows, version.ref if version else str(path), counters, spec.max_length)
    if profile.rows == 0:
        raise InvalidInput(f"{source}: no valid rows to analyse")
    files = write_report(profile, Path(out_dir))
    return Analysis(profile.summary(), files, profile)


def version_analysis(settings: Settings, version: DatasetVersion, spec: DataSpec) -> Path:
    """The analysis of a registered version, computed once and kept beside the stored copy.

    A version is immutable, so every run that trains on it reuses the same report; the key
    includes what changes the result (tokenizer and max_length).
    """
    store = store_for(settings)
    model = "".join(c if c.isalnum() or c in "-_" else "_" for c in spec.base_model)[-60:]
    folder = store.root / "analysis" / f"{version.fingerprint}-{model}-{spec.max_length}"
    if (folder / "report.html").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".analysis-", dir=folder.parent))
    try:
        analyze_dataset(settings, version.ref, scratch, spec)
        try:
            scratch.rename(folder)  # atomic; a concurrent run may have won the race
        except OSError:
            if not (folder / "report.html").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _checked_rows(path: Path, spec: DataSpec, settings: Settings) -> Iterator[tuple[str, str]]:
    """Valid rows of a file; a file that cannot be read at all is an InvalidInput."""
    limits = limits_for(settings)
    issues = IssueLog(3)
    reader = RecordReader(
        path,
        spec.text_column,
        spec.label_column,
        issues,
        max_rows=limits.max_rows,
        max_bytes=limits.max_bytes,
    )
    for record in reader:
        if record.text and record.text.strip() and record.label and record.label.strip():
            yield record.text.strip(), record.label.strip()
    fatal = [i for i in issues.issues if i.row is None and i.line is None]
    if fatal and reader.rows == 0:
        raise InvalidInput("; ".join(describe(i) for i in fatal))


def resolve_training_data(settings: Settings, config: TrainConfig) -> TrainingData:
    """Resolve dataset refs in a training config and validate its data before any model loads.

    Errors raise :class:`DatasetInvalid` naming the first few problems; nothing is written.
    """
    spec = DataSpec.from_config(config)
    train_path, val_path, spec, versions = _resolve_pair(
        settings, config.train_file, config.validation_file, spec
    )
    if versions:
        config = config.model_copy(
            update={
                "train_file": str(train_path.resolve()),
                "validation_file": str(val_path.resolve()) if val_path else None,
                "text_column": spec.text_column,
                "label_column": spec.label_column,
            }
        )
    report = _validate_pair(settings, train_path, val_path, spec)
    if not report.ok:
        raise DatasetInvalid(f"the training data has errors: {report.summary()}", report)
    for issue in report.warnings[:5]:
        log.warning("data warning: %s", describe(issue))
    return TrainingData(config, report, versions)


FIT_SAMPLE_ROWS = 2000  # rows whose tokens judge a local model's vocabulary


def language_fit(
    settings: Settings, ref: str, base_model: str, model_source: str | None = None
) -> str | None:
    """The language-mismatch warning for training ``base_model`` on a registered dataset, or
    None; read from the version's stored language profile before any model loads.

    A model outside the catalog (``model_source``: its folder) is judged by its tokenizer's
    unknown-token rate on the first rows of the data.
    """
    from loralab.datasets.language import LanguageProfile, check_model_fit, model_languages

    store = store_for(settings)
    version = store.resolve(parse_ref(ref))
    profile = LanguageProfile.from_dict(version.report.get("languages"))
    if not profile.counts:  # registered before language profiles: measure now
        profile = LanguageProfile.of(t for t, _ in read_canonical(store.file_of(version)))
    rate = None
    if model_languages(base_model) is None:  # measured once per version and tokenizer
        data = store.file_of(version)
        rate = unknown_rate(model_source or base_model, data, version.fingerprint, FIT_SAMPLE_ROWS)
    return check_model_fit(profile, base_model, rate)
