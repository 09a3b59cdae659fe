"""BatchStream with a hand-written service: chunk sizes, order, an in-band error row."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from loralab.serving.stream import BatchStream
from loralab.training.inference import Prediction


@dataclass(frozen=True)
class Handle:
    key: str


class FakeService:
    """Labels each text with itself; fails on the text ``fail_on``."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    async def run_in_worker(self, handle: Handle, texts: list[str]):
        self.calls.append(list(texts))
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return [Prediction(0, t, 0.5, {t: 0.5}) for t in texts], 1.0

    def answer(self, handle: Handle, p: Prediction, latency: float, cut: bool) -> dict[str, Any]:
        return {"label_name": p.label_name, "truncated": cut}


def collect(stream: BatchStream) -> list[list[dict[str, Any]]]:
    async def run() -> list[list[dict[str, Any]]]:
        return [rows async for rows in stream.chunks()]

    return asyncio.run(run())


def test_chunks_keep_order_and_size() -> None:
    service = FakeService()
    texts = [(f"t{i}", i == 3) for i in range(7)]
    chunks = collect(BatchStream(service, Handle("m@1"), texts, 3))  # type: ignore[arg-type]
    assert service.calls == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    rows = [row for chunk in chunks for row in chunk]
    assert [r["index"] for r in rows] == list(range(7))
    assert [r["label_name"] for r in rows] == [f"t{i}" for i in range(7)]
    assert [r["truncated"] for r in rows] == [i == 3 for i in range(7)]


def test_a_failure_part_way_ends_with_one_error_row() -> None:
    service = FakeService(fail_on="t4")
    texts = [(f"t{i}", False) for i in range(9)]
    chunks = collect(BatchStream(service, Handle("m@1"), texts, 3))  # type: ignore[arg-type]
    assert len(chunks) == 2 and len(service.calls) == 2  # nothing after the failed chunk
    assert chunks[1] == [{"index": 3, "error": "model failed"}]
