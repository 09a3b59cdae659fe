"""Search filters, sorting, pagination, and recommendation ranking on hand-made cards."""

from __future__ import annotations

import pytest
from tests.helpers.registry_fakes import MemoryRegistry, register

from loralab.errors import InvalidInput, NotFound
from loralab.registry.search import SearchQuery
from loralab.registry.service import Recommendations, RegistryService


@pytest.fixture()
def filled(service: RegistryService) -> RegistryService:
    register(
        service,
        "sentiment-en",
        description="lightweight English sentiment model for product reviews",
        accuracy=0.91,
        tags={"domain": "reviews", "size": "small"},
        dataset="product-reviews",
        fingerprint="fp-reviews",
        learning_rate=0.002,
    )
    register(
        service,
        "sentiment-en",
        description="English sentiment model for product reviews, second try",
        accuracy=0.95,
        tags={"domain": "reviews"},
        dataset="product-reviews",
        fingerprint="fp-reviews",
        learning_rate=0.005,
    )
    register(
        service,
        "sentiment-zh",
        description="Chinese sentiment model for Weibo posts",
        language="Chinese",
        base_model="bert-base-chinese",
        accuracy=0.88,
        tags={"domain": "social"},
        dataset="weibo",
        fingerprint="fp-weibo",
    )
    register(
        service,
        "spam",
        description="email spam filter detecting junk mail",
        task="spam-detection",
        labels=("ham", "spam"),
        accuracy=0.99,
        dataset="emails",
        fingerprint="fp-emails",
    )
    register(
        service,
        "news-topics",
        description="news topic classifier for sports politics business articles",
        task="topic",
        labels=("business", "politics", "sports"),
        base_model="roberta-base",
        accuracy=0.8,
        dataset="news",
        fingerprint="fp-news",
    )
    service.transition("spam@1", "Production", "bob")
    return service


def refs(page_or_list) -> list[str]:
    items = getattr(page_or_list, "items", page_or_list)
    return [getattr(i, "card", i).ref for i in items]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (SearchQuery(language="chinese"), {"sentiment-zh@1"}),
        (SearchQuery(base_model="roberta-base"), {"news-topics@1"}),
        (SearchQuery(task="Sentiment"), {"sentiment-en@1", "sentiment-en@2", "sentiment-zh@1"}),
        (SearchQuery(tags={"domain": "reviews"}), {"sentiment-en@1", "sentiment-en@2"}),
        (SearchQuery(tags={"size": None}), {"sentiment-en@1"}),
        (SearchQuery(stage="production"), {"spam@1"}),
        (
            SearchQuery(min_metrics={"accuracy": 0.9}),
            {"sentiment-en@1", "sentiment-en@2", "spam@1"},
        ),
        (SearchQuery(min_metrics={"f2": 0.1}), set()),
        (SearchQuery(name="sentiment-en", min_metrics={"accuracy": 0.92}), {"sentiment-en@2"}),
    ],
)
def test_filters(filled: RegistryService, query: SearchQuery, expected: set[str]) -> None:
    page = filled.search(query)
    assert set(refs(page)) == expected
    assert page.total == len(expected)


def test_sort_and_paginate(filled: RegistryService) -> None:
    by_metric = filled.search(SearchQuery(sort="metric:accuracy", limit=2))
    assert refs(by_metric) == ["spam@1", "sentiment-en@2"] and by_metric.total == 5
    second = filled.search(SearchQuery(sort="metric:accuracy", limit=2, offset=2))
    assert refs(second) == ["sentiment-en@1", "sentiment-zh@1"]
    assert refs(filled.search(SearchQuery(sort="metric:accuracy", offset=4))) == ["news-topics@1"]
    assert refs(filled.search(SearchQuery(offset=50))) == []
    names = refs(filled.search(SearchQuery(sort="name", descending=False)))
    assert names == sorted(names)
    newest = refs(filled.search(SearchQuery()))
    assert newest[0] == "news-topics@1"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (SearchQuery(limit=1_000_000), "limit must be between 1 and 100"),
        (SearchQuery(limit=0), "limit"),
        (SearchQuery(offset=-1), "offset"),
        (SearchQuery(sort="size"), "unknown sort"),
        (SearchQuery(stage="Prod"), "Staging, Production, Archived"),
        (SearchQuery(min_metrics={"accuracy": float("nan")}), "finite"),
    ],
)
def test_bad_search_input(filled: RegistryService, query: SearchQuery, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        filled.search(query)


def test_recommend_from_text_ranks_the_obvious_model_first(filled: RegistryService) -> None:
    results = filled.recommend_text("lightweight English sentiment model for product reviews", 3)
    assert refs(results)[0] == "sentiment-en@1"
    assert results[0].score > results[-1].score
    assert any("sentiment" in r for r in results[0].reasons)
    spam = filled.recommend_text("filter junk email spam", 1)
    assert refs(spam) == ["spam@1"]


def test_recommend_similar_to_a_version(filled: RegistryService) -> None:
    results = filled.recommend_similar("sentiment-en@1", 4)
    assert refs(results)[0] == "sentiment-en@2"
    assert "sentiment-en@1" not in refs(results)
    assert any("same dataset" in r for r in results[0].reasons)
    with pytest.raises(NotFound):
        filled.recommend_similar("sentiment-en@7")


def test_recommend_for_dataset_gives_best_settings(filled: RegistryService) -> None:
    same = filled.recommend_for_dataset("product-reviews", ["negative", "positive"], "fp-reviews")
    assert set(refs(same.results)[:2]) == {"sentiment-en@1", "sentiment-en@2"}
    assert same.results[0].score == 1.0
    assert same.starting_point_from == "sentiment-en@2"  # the more accurate run on that data
    assert same.starting_point is not None and same.starting_point["learning_rate"] == 0.005
    like = filled.recommend_for_dataset("mail-corpus", ["ham", "spam"])
    assert refs(like.results)[0] == "spam@1"
    assert like.starting_point_from == "spam@1"


def test_recommend_answers_each_question_in_one_shape(
    filled: RegistryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_text = filled.recommend(text="filter junk email spam", limit=2)
    assert by_text == Recommendations(filled.recommend_text("filter junk email spam", 2))
    assert refs(by_text.results)[0] == "spam@1" and by_text.starting_point is None
    like = filled.recommend(like="sentiment-en@1", limit=3)
    assert like == Recommendations(filled.recommend_similar("sentiment-en@1", 3))
    asked: list[tuple[str, int]] = []
    answer = Recommendations([], {"learning_rate": 0.1}, "spam@1")

    def registered(ref: str, limit: int = 5, viewer: object = None) -> Recommendations:
        asked.append((ref, limit))
        return answer

    monkeypatch.setattr(filled, "recommend_for_registered_dataset", registered)
    assert filled.recommend(dataset="emails@v1", limit=4) is answer
    assert asked == [("emails@v1", 4)]


@pytest.mark.parametrize(
    ("question", "got"),
    [
        ({}, "got none"),
        ({"text": "spam", "like": "spam@1"}, "got text, like"),
        ({"text": "", "like": "spam@1", "dataset": "emails@v1"}, "got text, like, dataset"),
    ],
)
def test_recommend_needs_exactly_one_question(
    filled: RegistryService, question: dict[str, str], got: str
) -> None:
    with pytest.raises(InvalidInput, match=f"exactly one of: text .*, like .*, dataset .*; {got}"):
        filled.recommend(**question)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   ", "empty"), ("x" * 10_000, "at most 1000")],
)
def test_bad_query_text(filled: RegistryService, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        filled.recommend_text(text)


def test_bad_limits_on_recommend(filled: RegistryService) -> None:
    for call in (
        lambda: filled.recommend_text("spam", 1_000_000),
        lambda: filled.recommend_similar("spam@1", 0),
        lambda: filled.recommend_for_dataset("emails", limit=101),
    ):
        with pytest.raises(InvalidInput, match="limit"):
            call()


def test_empty_registry(service: RegistryService, fake_registry: MemoryRegistry) -> None:
    assert service.search(SearchQuery()).total == 0
    assert service.recommend_text("anything") == []
    assert service.recommend_for_dataset("x").results == []
    with pytest.raises(NotFound):
        service.history("nothing")


def test_bad_query_embedding_is_refused(filled: RegistryService) -> None:
    class ZeroEmbedder:
        dim = 384

        def embed(self, texts: list[str]):
            import numpy as np

            return np.zeros((len(texts), 384), dtype=np.float32)

    filled._embedder = ZeroEmbedder()
    with pytest.raises(InvalidInput, match="all zeros"):
        filled.recommend_text("sentiment")


def test_add_card_refuses_duplicates(filled: RegistryService) -> None:
    card = filled.get_card("spam@1")
    from loralab.errors import Conflict

    with pytest.raises(Conflict):
        filled.add_card(card)
