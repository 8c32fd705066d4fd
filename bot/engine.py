"""The bridge between the event loop and the model: one worker thread, batched generation, hot swaps.

    engine = Engine(device="cpu")
    await engine.load("models/lyrics.pt")            # in the worker thread; raises ModelMissingError, BundleError
    sample = await engine.generate(SampleRequest(seed="窗外的麻雀", ...))
    await engine.swap("models/new.pt")               # requests already running finish on the old model
    await engine.close()

Why one thread: torch modules are not safe to run concurrently from several threads, and a single
worker keeps requests in a fair FIFO order. Why batches: an RNN step costs nearly the same for 1 or
32 sequences, so requests that arrive while a batch runs (or within a few milliseconds of each other)
are gathered and run together through `Sampler.generate_many`. The event loop only ever awaits
futures, so heartbeats and other interactions keep flowing while the model works.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from model.checkpoint import Bundle
from model.sample import Sample, SampleRequest, Sampler
from model.vocab import warm_up

log = logging.getLogger(__name__)

GATHER_SECONDS = 0.005  # how long a lone request waits for company before its batch starts
CLOSE_GRACE_SECONDS = 30.0  # how long close() lets the running batch finish


class EngineError(Exception):
    """Base class of the engine's own errors."""


class ModelMissingError(EngineError):
    """There is no bundle file at the configured path: no model has been trained yet."""


class ModelNotLoadedError(EngineError):
    """A request arrived while no model is loaded."""


class EngineClosedError(EngineError):
    """The engine is shutting down and takes no more work."""


class SamplerLike(Protocol):
    """What the engine needs from `model.sample.Sampler` (tests may pass anything shaped like it)."""

    bundle_hash: str
    metrics: dict[str, Any]

    def generate(self, request: SampleRequest) -> Sample: ...

    def generate_many(self, requests: list[SampleRequest]) -> list[Sample]: ...


Loader = Callable[[Path, str], SamplerLike]


@dataclass(frozen=True)
class ModelInfo:
    """Which bundle is serving, for logs, replies and the songs table."""

    path: Path
    bundle_hash: str
    metrics: dict[str, Any]
    loaded_at: datetime
    bundle: Bundle | None = None  # the loaded bundle itself (config, history), so nothing re-reads the file


@dataclass(frozen=True)
class Generation:
    """A sample together with the model that wrote it (a swap may happen while a request waits)."""

    sample: Sample
    model: ModelInfo


@dataclass
class EngineStats:
    """Counters for logs, tests and the benchmark."""

    requests: int = 0  # samples written
    batches: int = 0  # forward-pass loops run (a batch of one counts too)
    largest_batch: int = 0


@dataclass
class _Job:
    request: SampleRequest
    future: asyncio.Future[Generation] = field(repr=False)


def load_sampler(path: Path, device: str) -> Sampler:
    """The default loader: read the bundle and initialise jieba, both slow, both in the worker thread."""
    sampler = Sampler.load(path, device=device)
    warm_up()  # jieba's dictionary loads on first use (1-2 s); pay it now, not on the first request
    return sampler


def default_torch_threads() -> int:
    """All cores but one: the event loop (heartbeats, HTTP) keeps a core to itself."""
    try:
        cores = len(os.sched_getaffinity(0))  # respects container CPU limits, unlike os.cpu_count()
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class Engine:
    """Owns the live sampler and the worker thread it runs on; see the module docstring."""

    def __init__(self, *, device: str = "cpu", batching: bool = True, max_batch: int = 32,
                 torch_threads: int = 0, gather_seconds: float = GATHER_SECONDS,
                 loader: Loader = load_sampler) -> None:
        self.device = device
        self.batching = batching
        self.max_batch = max_batch if batching else 1
        self._gather_seconds = gather_seconds if batching else 0.0
        self._loader = loader
        self._threads = torch_threads or default_torch_threads()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lyrics-engine",
                                            initializer=torch.set_num_threads, initargs=(self._threads,))
        self._live: tuple[SamplerLike, ModelInfo] | None = None
        self._queue: asyncio.Queue[_Job | None] | None = None  # created on first use, inside the running loop
        self._worker: asyncio.Task[None] | None = None
        self._running: list[_Job] = []  # the batch in the worker thread right now
        self._closed = False
        self.stats = EngineStats()
        self._seconds_per_batch = 2.0  # running estimate, for "try again in N s"; refined by every batch

    # ---- state

    @property
    def loaded(self) -> bool:
        return self._live is not None

    @property
    def info(self) -> ModelInfo | None:
        return self._live[1] if self._live else None

    def estimated_wait(self, queued: int) -> float:
        """Seconds until `queued` more requests would be done, from the recent batch times."""
        batches = max(1, -(-queued // self.max_batch))  # ceiling division
        return batches * self._seconds_per_batch

    # ---- loading

    async def load(self, path: str | os.PathLike[str]) -> ModelInfo:
        """Load the bundle at `path` in the worker thread and make it the live model.

        Requests already running finish on the previous model; later ones use this one. Raises
        ModelMissingError if there is no file, model.checkpoint.BundleError if it is not a usable
        bundle (the live model, if any, stays in place), EngineClosedError after close().
        """
        if self._closed:
            raise EngineClosedError("the engine is closed")
        path = Path(path)
        if not path.is_file():
            raise ModelMissingError(f"no model bundle at {path}")
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        sampler = await loop.run_in_executor(self._executor, self._loader, path, self.device)
        info = ModelInfo(path=path, bundle_hash=sampler.bundle_hash, metrics=dict(sampler.metrics),
                         loaded_at=datetime.now(UTC), bundle=getattr(sampler, "bundle", None))
        previous, self._live = self._live, (sampler, info)  # one assignment: the swap is atomic for the loop
        log.info("loaded model %s (bundle %s, %s) in %.1fs%s", path, info.bundle_hash[:12],
                 _describe_metrics(info.metrics), time.monotonic() - started,
                 f", replacing bundle {previous[1].bundle_hash[:12]}" if previous else "")
        return info

    swap = load  # same operation; the name reads better where a model is replaced

    # ---- generating

    async def generate(self, request: SampleRequest) -> Sample:
        """Generate one sample; see `generate_with_model`."""
        return (await self.generate_with_model(request)).sample

    async def generate_with_model(self, request: SampleRequest) -> Generation:
        """Queue `request` for the next batch and wait for its sample and the model that wrote it.

        Raises ModelNotLoadedError, EngineClosedError, or what the sampler raised for this request
        (model.sample.SamplingError for invalid parameters).
        """
        if self._closed:
            raise EngineClosedError("the bot is shutting down")
        if self._live is None:
            raise ModelNotLoadedError("no model is loaded")
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run_batches(), name="lyrics-engine-batcher")
            self._worker.add_done_callback(_log_crash)
        job = _Job(request, loop.create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _run_batches(self) -> None:
        """The batcher: take what is queued (up to max_batch), run it in the worker thread, repeat."""
        assert self._queue is not None
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            if self._gather_seconds:
                await asyncio.sleep(self._gather_seconds)
            jobs = [first]
            while len(jobs) < self.max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:  # close() was called; finish this batch, then stop
                    stopping = True
                    break
                jobs.append(job)
            jobs = [job for job in jobs if not job.future.done()]  # the asker gave up (cancelled)
            if jobs:
                await self._run_batch(jobs)

    async def _run_batch(self, jobs: list[_Job]) -> None:
        live = self._live  # read once: a swap during the batch does not affect it
        if live is None:
            _fail(jobs, ModelNotLoadedError("no model is loaded"))
            return
        sampler, info = live
        requests = [job.request for job in jobs]
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._running = jobs
        try:
            if len(jobs) == 1:
                samples = [await loop.run_in_executor(self._executor, sampler.generate, requests[0])]
            else:
                samples = await loop.run_in_executor(self._executor, sampler.generate_many, requests)
        except Exception as exc:  # noqa: BLE001 - any failure is handed to the askers, never lost
            if len(jobs) == 1:
                _fail(jobs, exc)
                return
            # One bad request must not fail the others: retry them one by one.
            log.warning("a batch of %d failed (%s: %s); retrying one by one", len(jobs), type(exc).__name__, exc)
            samples = None
        finally:
            self._running = []
        if samples is None:
            for job in jobs:
                await self._run_batch([job])
            return
        elapsed = time.monotonic() - started
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed
        log.debug("batch of %d in %.2fs", len(jobs), elapsed)
        self.stats.requests += len(jobs)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
        for job, sample in zip(jobs, samples, strict=True):
            if not job.future.done():
                job.future.set_result(Generation(sample, info))

    # ---- shutting down

    async def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Let the running batch finish, fail what is still queued, stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._queue is not None and self._worker is not None:
            waiting: list[_Job] = []
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if job is not None:
                    waiting.append(job)
            _fail(waiting, EngineClosedError("the bot is shutting down"))
            self._queue.put_nowait(None)  # wakes an idle batcher, or stops it after its current batch
            done, _ = await asyncio.wait({self._worker}, timeout=grace)
            if not done:
                log.warning("the running batch did not finish within %.0fs; abandoning it", grace)
                self._worker.cancel()
                _fail(self._running, EngineClosedError("the bot is shutting down"))
        # Waits for the thread to go idle; in a thread itself so the event loop stays responsive.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._live = None
        log.info("engine closed")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the batcher stopped unexpectedly", exc_info=task.exception())


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)


def _describe_metrics(metrics: dict[str, Any]) -> str:
    parts = [f"{key} {value:.3f}" for key, value in metrics.items() if isinstance(value, float)][:3]
    return ", ".join(parts) or "no metrics"
