"""Versioning: fingerprints, the content-addressed store, refs, diffs and atomic registration."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from loralab.datasets import service
from loralab.datasets.versioning import DatasetStore, diff_rows, fingerprint_rows, parse_ref
from loralab.errors import InvalidInput, NotFound
from loralab.settings import Settings, StorageSettings

ROWS = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(10)]


def settings_for(tmp_path: Path) -> Settings:
    return Settings(storage=StorageSettings(results_dir=tmp_path / "results"))


def write_csv(path: Path, rows: list[tuple[str, str]], newline: str = "\n") -> Path:
    lines = ["text,label"] + [f"{t},{lab}" for t, lab in rows]
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


def register(settings: Settings, path: Path, name: str = "demo") -> service.Registration:
    return service.register_dataset(settings, name, path, user="alice", spec=service.DataSpec())


def store_files(settings: Settings) -> list[Path]:
    root = settings.dataset_store_dir
    return (
        sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".lock")
        if root.exists()
        else []
    )


def test_fingerprint_ignores_format_but_not_content() -> None:
    base = fingerprint_rows(ROWS)
    assert fingerprint_rows([(f"  {t} ", lab) for t, lab in ROWS]) == base
    assert fingerprint_rows(ROWS[:-1]) != base
    assert fingerprint_rows([*ROWS[:-1], (ROWS[-1][0], "neg")]) != base


def test_same_content_gives_the_same_version_and_one_copy(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first = register(settings, write_csv(tmp_path / "a.csv", ROWS))
    # Same rows, other bytes (CRLF, TSV): the same normalised content.
    again = register(settings, write_csv(tmp_path / "b.csv", ROWS, newline="\r\n"))
    tsv = tmp_path / "c.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in ROWS))
    third = register(settings, tsv)
    assert first.created and not again.created and not third.created
    assert first.version.version == again.version.version == third.version.version == "v1"
    other = register(settings, tsv, name="other")  # another name shares the stored copy
    assert other.created and other.version.fingerprint == first.version.fingerprint
    objects = [p for p in store_files(settings) if "objects" in p.parts]
    assert len(objects) == 1


def test_one_row_change_is_a_new_version_and_the_diff_names_the_row(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    v1 = register(settings, write_csv(tmp_path / "a.csv", ROWS)).version
    changed = list(ROWS)
    changed[3] = (ROWS[3][0], "neg")  # relabel row 4
    v2 = register(settings, write_csv(tmp_path / "b.csv", changed)).version
    assert (v1.version, v2.version) == ("v1", "v2") and v1.fingerprint != v2.fingerprint
    diff = service.diff_versions(settings, "demo@v1", "demo@latest")
    assert (diff.added, diff.removed, diff.relabelled) == (0, 0, 1)
    change = diff.changes[0]
    assert (change.kind, change.row_old, change.row_new) == ("relabelled", 4, 4)
    assert (change.text, change.label_old, change.label_new) == ("text number 3", "pos", "neg")


def test_diff_added_and_removed_rows() -> None:
    diff = diff_rows(ROWS, [*ROWS[1:], ("brand new", "pos")], "a", "b")
    assert (diff.added, diff.removed, diff.relabelled, diff.unchanged) == (1, 1, 0, 9)
    kinds = {(c.kind, c.row_old, c.row_new, c.text) for c in diff.changes}
    assert kinds == {("removed", 1, None, "text number 0"), ("added", None, 10, "brand new")}


def test_record_holds_who_what_and_the_report(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    register(settings, write_csv(tmp_path / "a.csv", [*ROWS, (" padded ", "pos")]))
    version = service.show_version(settings, "demo@v1")
    assert version.registered_by == "alice" and version.rows == 11
    assert version.label_counts == {"neg": 5, "pos": 6}
    assert version.report["status"] == "warnings"
    stored = settings.dataset_store_dir / version.path
    assert stored.read_text().splitlines()[-1] == json.dumps({"text": "padded", "label": "pos"})
    assert service.show_version(settings, f"demo@{version.fingerprint[:8]}") == version


def test_failed_registration_leaves_no_file_and_no_record(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    bad = write_csv(tmp_path / "bad.csv", [*ROWS, ("", "pos")])
    with pytest.raises(service.DatasetInvalid) as caught:
        register(settings, bad)
    assert caught.value.report.errors[0].row == 11
    assert not settings.dataset_store_dir.exists()
    with pytest.raises(NotFound):
        service.list_versions(settings, "demo")


@pytest.mark.parametrize("name", ["../etc", "a/b", "UPPER", "", ".hidden", "x" * 65, "a..b"])
def test_names_are_strict(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        register(settings_for(tmp_path), write_csv(tmp_path / "a.csv", ROWS), name=name)


@pytest.mark.parametrize("ref", ["demo", "demo@", "demo@../x", "demo@V1", "../x@v1", "demo@v1@v2"])
def test_refs_are_strict(ref: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ref(ref)


def test_unknown_versions_are_not_found(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    register(settings, write_csv(tmp_path / "a.csv", ROWS))
    for ref in ("demo@v2", "nothing@latest", "demo@abcdef"):
        with pytest.raises(NotFound):
            service.show_version(settings, ref)


def test_concurrent_registrations_stay_consistent(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    same = [write_csv(tmp_path / f"same{i}.csv", ROWS) for i in range(4)]
    different = [
        write_csv(tmp_path / f"diff{i}.csv", [*ROWS, (f"extra {i}", "pos")]) for i in range(4)
    ]
    errors: list[BaseException] = []

    def work(path: Path) -> None:
        try:
            register(settings, path)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(p,)) for p in same + different]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    versions = service.list_versions(settings, "demo")
    assert [v.version for v in versions] == [f"v{i}" for i in range(1, 6)]
    assert len({v.fingerprint for v in versions}) == 5
    objects = [p for p in store_files(settings) if "objects" in p.parts]
    assert len(objects) == 5
    assert not [p for p in store_files(settings) if p.name.endswith(".tmp")]


def test_store_copy_is_read_only(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    version = register(settings, write_csv(tmp_path / "a.csv", ROWS)).version
    mode = (settings.dataset_store_dir / version.path).stat().st_mode & 0o777
    assert mode == 0o444
    assert DatasetStore(settings.dataset_store_dir).names() == ["demo"]


@pytest.mark.parametrize(
    ("ref", "version"),
    [("demo@3", "v3"), ("demo@007", "v7"), ("demo@99999", "v99999"), ("demo@v3", "v3")],
)
def test_a_plain_number_is_a_version(ref: str, version: str) -> None:
    assert parse_ref(ref).version == version


def test_six_or_more_digits_are_a_fingerprint_prefix(tmp_path: Path) -> None:
    assert parse_ref("demo@123456").version == "123456"
    settings = settings_for(tmp_path)
    first = register(settings, write_csv(tmp_path / "a.csv", ROWS)).version
    second = register(settings, write_csv(tmp_path / "b.csv", ROWS[:-1])).version
    assert service.show_version(settings, "demo@2").fingerprint == second.fingerprint
    assert service.show_version(settings, "demo@1").fingerprint == first.fingerprint
    store = service.store_for(settings)
    digits = "1234567" + first.fingerprint[7:]  # a fingerprint that starts with digits only
    store._write_record("demo", [dataclasses.replace(first, fingerprint=digits), second])
    assert service.show_version(settings, "demo@1234567").version == "v1"
    with pytest.raises(NotFound):
        service.show_version(settings, "demo@3")
