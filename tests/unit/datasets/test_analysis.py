"""Distribution analysis: the profile's numbers, the plots and the self-contained HTML."""

from __future__ import annotations

from pathlib import Path

from loralab.datasets.analysis import detect_language, profile_rows, write_report

ROWS = [
    ("a lovely film", "pos"),
    ("a lovely film", "pos"),  # duplicate
    ("A lovely film!", "pos"),  # near duplicate
    ("a lovely film", "neg"),  # conflict
    ("一部很糟糕的电影", "neg"),
    ("terrible acting throughout", "neg"),
]


def test_profile_counts_and_report(tmp_path: Path) -> None:
    counters = {"ws": lambda texts: [len(t.split()) + 2 for t in texts]}
    profile = profile_rows(ROWS, "sample", counters, max_length=4)
    s = profile.summary()
    assert s["rows"] == 6 and s["labels"] == {"pos": 3, "neg": 3}
    assert (s["duplicates"], s["near_duplicates"], s["conflicting_labels"]) == (1, 1, 1)
    assert s["languages"] == {"English": 5, "Chinese": 1}
    assert s["truncated"] == {"ws": 5}  # every English text has 3 words + 2 specials > 4
    assert ("lovely", 3) in s["top_tokens"]["pos"]
    files = write_report(profile, tmp_path / "out")
    for key in ("labels", "char_lengths", "tokens_ws", "top_tokens", "languages"):
        assert files[key].read_bytes().startswith(b"\x89PNG")
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == 5 and "<img" in page and 'src="http' not in page


def test_detect_language_by_script() -> None:
    assert detect_language("hello there") == "English"
    assert detect_language("这是中文") == "Chinese"
    assert detect_language("これは日本語") == "Japanese"
    assert detect_language("12345 !!") == "other"


def test_a_registered_version_is_analysed_once(tmp_path: Path) -> None:
    """Every run on the same immutable version reuses one analysis instead of recomputing it."""
    import csv

    from loralab.datasets import service
    from loralab.settings import Settings, StorageSettings

    settings = Settings(storage=StorageSettings(results_dir=tmp_path / "results"))
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [("text", "label"), *[(f"{t} {i}", lab) for i, (t, lab) in enumerate(ROWS)]]
        )
    version = service.register_dataset(
        settings, "reviews", path, user="alice", spec=service.DataSpec()
    ).version
    spec = service.DataSpec(max_length=16)
    first = service.version_analysis(settings, version, spec)
    stamp = (first / "report.html").stat().st_mtime_ns
    second = service.version_analysis(settings, version, spec)
    assert second == first and (second / "report.html").stat().st_mtime_ns == stamp
    assert service.version_analysis(settings, version, service.DataSpec(max_length=8)) != first
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".analysis-")]
