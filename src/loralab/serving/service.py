"""The prediction service: limits, model choice per request, micro-batching, metrics.

Concurrent single requests are gathered into micro-batches: the first request of a batch waits
at most ``micro_batch_wait_ms`` for others (only while the service is under load, so a lone
client pays no wait), up to ``micro_batch_size`` texts. Model work (tokenising included) runs on
one worker thread, off the event loop; torch uses every core inside it.

In ``merged`` mode the served default version runs on ONNX Runtime when ``serving.onnx`` is on
(see serving/onnx_cache.py); every other version runs as an adapter on PyTorch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loralab.errors import InvalidInput, NotFound, PayloadTooLarge
from loralab.infra.artifacts import cache_dir
from loralab.observability.metrics import Metrics
from loralab.serving.engine import ModelPool
from loralab.serving.onnx_cache import OnnxCache
from loralab.serving.resolve import ModelHandle, ModelResolver
from loralab.settings import Settings
from loralab.training.inference import Prediction

log = logging.getLogger("loralab.serving")


@dataclass
class _Pending:
    handle: ModelHandle
    text: str
    future: asyncio.Future[tuple[Prediction, float]]


class MicroBatcher:
    """Gathers concurrent requests into batches per model version."""

    def __init__(self, service: PredictionService, max_size: int, max_wait_s: float) -> None:
        self.service = service
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._expected = 1  # requests the last batch had: how many to wait for under load

    async def submit(self, handle: ModelHandle, text: str) -> tuple[Prediction, float]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._consume(self._queue))
        future: asyncio.Future[tuple[Prediction, float]] = loop.create_future()
        self._queue.put_nowait(_Pending(handle, text, future))
        return await future

    async def _consume(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            if self._expected > 1 and self.max_size > 1 and self.max_wait_s > 0:
                await self._fill(queue, min(self._expected, self.max_size) - 1)
            while len(batch) < self.max_size and not queue.empty():
                batch.append(queue.get_nowait())
            # under load, the clients just answered come back soon: wait for about as many
            self._expected = len(batch) if len(batch) > 1 or not queue.empty() else 1
            groups: dict[str, list[_Pending]] = defaultdict(list)
            for item in batch:
                groups[item.handle.key].append(item)
            for items in groups.values():
                await self._run(items)

    async def _fill(self, queue: asyncio.Queue[_Pending], wanted: int) -> None:
        """Wait until ``wanted`` more requests are queued or the wait runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while queue.qsize() < wanted and loop.time() < deadline:
            await asyncio.sleep(min(0.0005, self.max_wait_s))

    async def _run(self, items: list[_Pending]) -> None:
        try:
            predictions, latency = await self.service.run_in_worker(
                items[0].handle, [i.text for i in items]
            )
        except Exception as err:  # noqa: BLE001 - handed to each waiting request
            for item in items:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        for item, prediction in zip(items, predictions, strict=True):
            if not item.future.done():
                item.future.set_result((prediction, latency))


class PredictionService:
    """Everything ``/health``, ``/predict`` and ``/predict/batch`` need."""

    def __init__(
        self,
        settings: Settings,
        resolver: ModelResolver | None = None,
        pool: ModelPool | None = None,
        metrics: Metrics | None = None,
        model: str | None = None,
        experiment: str | None = None,
    ) -> None:
        self.settings = settings
        self.limits = settings.serving
        if self.limits.threads:
            torch.set_num_threads(self.limits.threads)
        self.resolver = resolver or ModelResolver(settings)
        self.pool = pool or ModelPool(
            self.limits.cache_size,
            self.limits.device,
            self.limits.precision,
            onnx=onnx_cache(settings),
        )
        self.metrics = metrics or Metrics()
        self.model = model  # served when a request names none; else chosen by _default_ref
        self.experiment = experiment
        self.default: ModelHandle | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loralab-model")
        # merges (and ONNX exports) a newly promoted default beside the model thread
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loralab-loader")
        self.batcher = MicroBatcher(
            self, self.limits.micro_batch_size, self.limits.micro_batch_wait_ms / 1000
        )
        self.started_at = time.time()

    # -- models ---------------------------------------------------------------------------
    def _default_ref(self) -> str:
        return self.model or self.resolver.default_ref(self.experiment)

    def load_default(self) -> ModelHandle:
        """Resolve and pre-load the default model (merged in ``merged`` mode)."""
        ref = self._default_ref()
        handle = self.resolver.resolve(ref)
        if self.limits.mode == "merged":
            self.pool.merge(handle)
        else:
            self.pool.ensure(handle)
        if self.default is None or self.default.key != handle.key:
            log.info("default model: %s (%s)", handle.key, ref)
        self.default = handle
        self.metrics.models_loaded.set(len(self.pool.loaded()))
        return handle

    def refresh(self) -> None:
        """Pick up promotions and archives: re-resolve the default alias, pre-load a change.

        When the alias names no live version any more (say, the Production version was
        archived), nothing is served by default until one is.
        """
        try:
            handle = self.resolver.resolve(self._default_ref())
        except NotFound as err:
            if self.default is not None:
                log.warning("default model %s withdrawn: %s", self.default.key, err)
            self.default = None
            return
        if self.default is None or handle.key != self.default.key:
            self.switch_default(handle)

    def switch_default(self, handle: ModelHandle) -> None:
        """Serve a new default (a promotion) at once: in ``merged`` mode it answers as an
        adapter while its merge and ONNX export run on the loader thread, which takes the model
        thread only for the swap. Exporting on the model thread stalled every request for the
        export's seconds (2.5-5 s for a tiny model on 2 busy cores); beside it, requests go on,
        slower while the export shares the cores."""
        if self.limits.mode != "merged" or self.default is None:
            self.load_default()
            return
        self.pool.ensure(handle)
        log.info("default model: %s (merging beside the model thread)", handle.key)
        self.default = handle
        self.loader.submit(self._merge_default, handle)

    def _merge_default(self, handle: ModelHandle) -> None:
        try:
            self.pool.merge(handle)
        except Exception as err:  # noqa: BLE001 - it stays served as an adapter
            log.warning(
                "merging the new default %s failed (served as an adapter): %s", handle.key, err
            )
        self.metrics.models_loaded.set(len(self.pool.loaded()))

    def handle_for(self, model: str | None) -> ModelHandle:
        if model is None or not model.strip():
            if self.default is None:
                return self.load_default()
            return self.default
        return self.resolver.resolve(model)

    # -- limits ---------------------------------------------------------------------------
    def check_text(self, text: str, field: str = "text") -> tuple[str, bool]:
        """The text to classify and whether it was cut; refuses empty and over-long texts."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"{field}: the text is empty")
        limit = self.limits.max_text_chars
        if len(text) <= limit:
            return text, False
        if self.limits.truncate:
            return text[:limit], True
        raise PayloadTooLarge(
            f"{field}: {len(text)} characters; the limit is {limit} "
            "(or enable serving.truncate to cut long texts)"
        )

    def check_batch(self, texts: list[str]) -> list[tuple[str, bool]]:
        if not texts:
            raise InvalidInput("texts: give at least one text")
        if len(texts) > self.limits.max_batch_texts:
            raise PayloadTooLarge(
                f"texts: {len(texts)} texts; at most {self.limits.max_batch_texts} per request"
            )
        return [self.check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]

    # -- predicting -----------------------------------------------------------------------
    def run_model(self, handle: ModelHandle, texts: list[str]) -> tuple[list[Prediction], float]:
        """Model work for one batch, timed; records metrics."""
        start = time.perf_counter()
        predictions = self.pool.predict(handle, texts)
        latency = time.perf_counter() - start
        self.metrics.predict_latency.labels(handle.key).observe(latency)
        self.metrics.batch_size.observe(len(texts))
        for p in predictions:
            self.metrics.observe_prediction(
                handle.key, p.label_name, len(handle.labels), p.probability
            )
        self.metrics.models_loaded.set(len(self.pool.loaded()))
        return predictions, latency * 1000

    async def run_in_worker(
        self, handle: ModelHandle, texts: list[str]
    ) -> tuple[list[Prediction], float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run_model, handle, texts)

    def answer(
        self, handle: ModelHandle, prediction: Prediction, latency_ms: float, truncated: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": prediction.label,
            "label_name": prediction.label_name,
            "probability": round(prediction.probability, 6),
            "latency_ms": round(latency_ms, 3),
            "base_model": handle.base_name,
            "language": handle.language,
            "model_version": handle.key,
        }
        if truncated:
            out["truncated"] = True
        return out

    def predict_sync(self, text: str, model: str | None = None) -> dict[str, Any]:
        """In-process prediction of one text (no batching): for notebooks and benchmarks."""
        cleaned, truncated = self.check_text(text)
        handle = self.handle_for(model)
        [prediction], latency = self.run_model(handle, [cleaned])
        return self.answer(handle, prediction, latency, truncated)

    async def predict(self, text: str, model: str | None = None) -> dict[str, Any]:
        cleaned, truncated = self.check_text(text)
        handle = await self._handle_async(model)
        prediction, latency = await self.batcher.submit(handle, cleaned)
        return self.answer(handle, prediction, latency, truncated)

    async def predict_batch(self, texts: list[str], model: str | None = None) -> dict[str, Any]:
        checked = self.check_batch(texts)
        handle = await self._handle_async(model)
        predictions, latency = await self.run_in_worker(handle, [t for t, _ in checked])
        results = [
            self.answer(handle, p, latency, cut)
            for p, (_, cut) in zip(predictions, checked, strict=True)
        ]
        return {"predictions": results, "latency_ms": round(latency, 3), "count": len(results)}

    async def _handle_async(self, model: str | None) -> ModelHandle:
        if model is None and self.default is not None:
            return self.default
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.handle_for, model)

    def health(self) -> dict[str, Any]:
        default = self.default
        return {
            "status": "ok" if default is not None else "no model loaded",
            "model_loaded": default is not None,
            "model_version": default.key if default else None,
            "stage": default.stage if default else None,
            "base_model": default.base_name if default else None,
            "language": default.language if default else None,
            "labels": list(default.labels) if default else [],
            "device": self.pool.description,
            "mode": self.limits.mode,
            "backend": self.pool.backend(default.key) if default else None,
            "onnx_note": self.pool.onnx_note,
            "loaded": self.pool.loaded(),
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def close(self) -> None:
        self.loader.shutdown(wait=False, cancel_futures=True)
        self.executor.shutdown(wait=False, cancel_futures=True)


def onnx_cache(settings: Settings) -> OnnxCache | None:
    """The ONNX cache for the hot model, when ``merged`` mode and ``serving.onnx`` want one."""
    serving = settings.serving
    if serving.mode != "merged" or not serving.onnx:
        return None
    root = serving.onnx_cache_dir or cache_dir(settings) / "onnx"
    return OnnxCache(
        Path(root), threads=serving.onnx_threads or serving.threads, spin=serving.onnx_spin
    )
