"""A large ``POST /predict/batch`` answered as it is computed, chunk by chunk.

Everything that can refuse the request (the batch cap, empty or over-long texts, an unknown
model) is checked by :func:`open_batch_stream` *before* the first byte is sent, so a refusal
still gets its status code (413, 422, 404). Then :meth:`BatchStream.chunks` classifies
``chunk_size`` texts at a time on the model thread and hands each chunk's answers on at once:
the answers of the whole request are never held together, and a client that hangs up stops
the work at the next chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from loralab.serving.resolve import ModelHandle
from loralab.serving.service import PredictionService

log = logging.getLogger("loralab.serving")


@dataclass
class BatchStream:
    """A checked batch, ready to be classified chunk by chunk."""

    service: PredictionService
    handle: ModelHandle
    checked: list[tuple[str, bool]]  # (text to classify, whether it was cut)
    chunk_size: int

    async def chunks(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The answers, in request order, one list per chunk; each answer carries its
        ``index`` in the request. A failure part-way (the status line is already sent) ends
        the stream with one ``{"index": i, "error": ...}`` row for the first unanswered text.
        """
        for start in range(0, len(self.checked), self.chunk_size):
            part = self.checked[start : start + self.chunk_size]
            try:
                predictions, latency = await self.service.run_in_worker(
                    self.handle, [text for text, _ in part]
                )
            except Exception as err:  # noqa: BLE001 - the status line is sent: report in-band
                log.warning("streamed batch stopped at text %d: %s", start, err)
                yield [{"index": start, "error": str(err) or type(err).__name__}]
                return
            yield [
                {"index": start + i, **self.service.answer(self.handle, p, latency, cut)}
                for i, (p, (_, cut)) in enumerate(zip(predictions, part, strict=True))
            ]


async def open_batch_stream(
    service: PredictionService, texts: list[str], model: str | None
) -> BatchStream:
    """Check the batch and resolve its model (the errors of ``predict_batch``, raised here
    before anything is sent); chunks are ``serving.micro_batch_size`` texts."""
    checked = service.check_batch(texts)
    if model is None and service.default is not None:
        handle = service.default
    else:
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(service.executor, service.handle_for, model)
    return BatchStream(service, handle, checked, max(1, service.limits.micro_batch_size))
