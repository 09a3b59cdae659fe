"""MicroBatcher with a hand-written service: grouping per version, order, errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from loralab.serving.service import MicroBatcher
from loralab.training.inference import Prediction


@dataclass(frozen=True)
class Handle:
    key: str


class FakeService:
    """Echoes each text back as its label; records the batches it was given."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.fail_on = fail_on

    async def run_in_worker(self, handle: Handle, texts: list[str]):
        await asyncio.sleep(0.01)  # the model is busy: more requests pile up meanwhile
        self.batches.append((handle.key, list(texts)))
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return [Prediction(0, f"{handle.key}:{t}", 0.9, {}) for t in texts], 1.5


def run(batcher: MicroBatcher, requests: list[tuple[str, str]]):
    async def main():
        return await asyncio.gather(
            *(batcher.submit(Handle(k), t) for k, t in requests), return_exceptions=True
        )

    return asyncio.run(main())


def test_concurrent_requests_are_batched_per_version_and_answered_in_order() -> None:
    service = FakeService()
    batcher = MicroBatcher(service, max_size=8, max_wait_s=0.005)  # type: ignore[arg-type]
    requests = [("a" if i % 3 else "b", f"t{i}") for i in range(40)]
    answers = run(batcher, requests)
    for (key, text), (prediction, latency) in zip(requests, answers, strict=True):
        assert prediction.label_name == f"{key}:{text}" and latency == 1.5
    assert len(service.batches) < len(requests)
    assert all(len(texts) <= 8 for _, texts in service.batches)
    assert all(len({key}) == 1 for key, _ in service.batches)


def test_a_failed_batch_fails_only_its_requests() -> None:
    service = FakeService(fail_on="boom")
    batcher = MicroBatcher(service, max_size=1, max_wait_s=0)  # type: ignore[arg-type]
    answers = run(batcher, [("a", "fine"), ("a", "boom"), ("a", "also fine")])
    assert answers[0][0].label_name == "a:fine"
    assert isinstance(answers[1], RuntimeError)
    assert answers[2][0].label_name == "a:also fine"


@pytest.mark.parametrize("size", [1, 4])
def test_batch_size_one_means_no_batching(size: int) -> None:
    service = FakeService()
    batcher = MicroBatcher(service, max_size=size, max_wait_s=0.001)  # type: ignore[arg-type]
    run(batcher, [("a", f"t{i}") for i in range(12)])
    assert max(len(t) for _, t in service.batches) <= size
