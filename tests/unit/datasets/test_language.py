"""Language profiles, the model-fit check and the language parts of the validation report."""

from __future__ import annotations

from pathlib import Path

import pytest

from loralab.datasets.language import (
    LanguageProfile,
    check_model_fit,
    data_language,
    detect_language,
)
from loralab.datasets.validation import ValidationOptions, validate_files

ZH = Path(__file__).parents[3] / "data" / "samples" / "sentiment_zh.csv"
EN = Path(__file__).parents[3] / "data" / "samples" / "sentiment_en.csv"


def test_detect_language_by_script_and_english_words() -> None:
    assert detect_language("这部电影太精彩了，强烈推荐") == "Chinese"
    assert detect_language("これは日本語です") == "Japanese"
    assert detect_language("the café was lovely") == "English"
    assert detect_language("café crème délicieux") == "Latin script (not English)"
    assert detect_language("12345 !!") == "other"


def test_profile_dominant_and_shares() -> None:
    profile = LanguageProfile.of(["这部电影太精彩了"] * 3 + ["great film", "42"])
    assert profile.dominant == "Chinese"
    assert profile.share("Chinese") == pytest.approx(0.6)
    assert data_language(LanguageProfile.of(["42"])) == "unknown"
    assert LanguageProfile.from_dict(profile.counts) == profile


def test_chinese_data_on_an_english_catalog_model_names_a_model_that_fits() -> None:
    profile = LanguageProfile({"Chinese": 9, "English": 1})
    warning = check_model_fit(profile, "minilm-l6")
    assert warning is not None
    assert "90% Chinese" in warning and "reads English" in warning
    assert "bert-base-chinese" in warning and "no package ships" in warning
    assert check_model_fit(profile, "bert-base-chinese") is None


def test_english_data_and_mixed_data_draw_no_warning() -> None:
    assert check_model_fit(LanguageProfile({"English": 10}), "minilm-l6") is None
    assert check_model_fit(LanguageProfile({"Chinese": 5, "English": 5}), "minilm-l6") is None


def test_a_local_model_is_judged_by_its_unknown_token_rate() -> None:
    profile = LanguageProfile({"Chinese": 10})
    assert check_model_fit(profile, "/models/mine", unknown_rate=0.01) is None
    warning = check_model_fit(profile, "/models/mine", unknown_rate=0.4)
    assert warning is not None and "40% unknown tokens" in warning


def _chars(texts: list[str]) -> list[int]:
    return [len(t) + 2 for t in texts]  # one token per character, plus [CLS] and [SEP]


def _unknown_cjk(texts: list[str]) -> list[int]:
    return [sum(1 for c in t if "\u4e00" <= c <= "\u9fff") for t in texts]


def test_validation_report_holds_languages_and_unknown_token_rate() -> None:
    report = validate_files(ZH, token_counter=_chars, unknown_counter=_unknown_cjk)
    data = report.to_dict()
    assert data["language"] == "Chinese"
    assert data["languages"] == {"Chinese": report.files[0].valid_rows}
    assert data["unknown_token_rate"] > 0.5
    assert "warning:unknown_tokens" in data["counts"]


def test_english_sample_has_no_unknown_tokens_warning() -> None:
    report = validate_files(EN, token_counter=_chars, unknown_counter=lambda t: [0] * len(t))
    assert report.to_dict()["language"] == "English"
    assert report.unknown_token_rate == 0.0
    assert "warning:unknown_tokens" not in report.counts


def test_truncation_warning_suggests_a_max_length_and_names_chinese() -> None:
    report = validate_files(ZH, options=ValidationOptions(max_length=10), token_counter=_chars)
    [warning] = [i for i in report.warnings if i.code == "truncation_rate"]
    assert "keeps 99% of them whole" in warning.message
    assert "Chinese takes about one token per character" in warning.message


def test_error_mode_refuses_chinese_data_on_minilm_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loralab.errors import InvalidInput
    from loralab.experiments import service as experiments
    from loralab.settings import DatasetSettings, Settings, StorageSettings
    from loralab.training.config import build_config

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(experiments, "prepare_training", no_model)
    settings = Settings(
        storage=StorageSettings(results_dir=tmp_path / "results"),
        datasets=DatasetSettings(language_mismatch="error"),
    )
    config = build_config({"train_file": str(ZH), "base_model": "minilm-l6"})
    with pytest.raises(InvalidInput, match="Chinese.*bert-base-chinese"):
        experiments.train(settings, config)


def test_warn_mode_notes_the_mismatch_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loralab.experiments import service as experiments
    from loralab.settings import Settings, StorageSettings
    from loralab.training.config import build_config

    class Loaded(Exception):
        pass

    def stop_at_model(*args: object, **kwargs: object) -> None:
        raise Loaded

    notes: list[str] = []

    class Progress:
        def __getattr__(self, name: str) -> object:
            return notes.append if name == "note" else (lambda *a, **k: None)

    monkeypatch.setattr(experiments, "prepare_training", stop_at_model)
    settings = Settings(storage=StorageSettings(results_dir=tmp_path / "results"))
    for data, expected in ((ZH, True), (EN, False)):
        notes.clear()
        config = build_config({"train_file": str(data), "base_model": "minilm-l6"})
        with pytest.raises(Loaded):
            experiments.train(settings, config, Progress())  # type: ignore[arg-type]
        said = [n for n in notes if n.startswith("language:")]
        assert bool(said) is expected, notes


def test_plots_find_a_cjk_font_where_one_is_installed(tmp_path: Path) -> None:
    import warnings

    from loralab.datasets.analysis import (
        CJK_FONT_FILES,
        FONT_DIRS,
        cjk_font,
        profile_rows,
        write_plots,
    )

    if not any(d.is_dir() and any(d.rglob(f)) for d in FONT_DIRS for f in CJK_FONT_FILES):
        pytest.skip("no CJK font on this machine (.ci/run installs fonts-wqy-microhei)")
    assert cjk_font() is not None
    profile = profile_rows([("这部电影太精彩了", "好"), ("质量很差", "差")], "zh")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph is a warning: here it fails the test
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.rcParams["font.family"] = ["DejaVu Sans", cjk_font()]  # as analysis does
        fig, ax = plt.subplots()
        ax.set_title("这部电影太精彩了")
        fig.savefig(tmp_path / "t.png")
    assert write_plots(profile, tmp_path / "plots")
