"""The one owner of the live model: a FIFO queue, one worker thread, batched generation, hot swaps.

    engine = Engine(device="cpu", max_queue=500)
    await engine.load("models/lyrics.pt")            # in the worker thread; raises ModelMissingError, BundleError
    ticket = engine.submit(SampleRequest(seed="窗外的麻雀", ...))   # QueueFullError when max_queue songs wait
    async for place in ticket.places():              # 1, 2, ...: its place while a batch runs without it
        ...
    generation = await ticket.result()               # .sample, and .model that wrote it
    await engine.close()

A new model goes live between two batches; requests already running finish on the old one. Whether a
trained candidate should go live is bot/promotion.py's business, built on three primitives here:
`load_candidate` (load in the worker thread, do not serve), `on_worker` (run something else that uses the
network, such as a re-score, in that thread) and `go_live` (serve a loaded sampler).

Why one thread: torch modules are not safe to run concurrently from several threads, and a single
worker keeps requests in a fair FIFO order. Why batches: an RNN step costs nearly the same for 1 or
32 sequences, so requests that arrive while a batch runs (or within a few milliseconds of each other)
are gathered and run together through `Sampler.generate_many`. The event loop only ever awaits
futures, so heartbeats and other interactions keep flowing while the model works.

The queue (bot/queue.py: the line, each song's place, each server's share, the tickets) is bounded by its
length (`max_queue` songs waiting), not by what is in flight: a burst waits its turn instead of being refused.
It never wedges: a batch that runs past `batch_timeout` fails with GenerationFailedError and the next batch
gets a fresh worker thread (a load or re-score queued behind the wedged batch moves to the fresh thread: it
never started); if the batcher task itself dies, every song waiting fails with GenerationFailedError and a new
batcher starts. A thread cannot be stopped, so the wedged one is left to end on its own (its executor is shut
down: the thread exits once its batch returns); one still running when the engine closes sets `abandoned`,
and `python -m bot` then exits with os._exit once the database is closed, rather than hang in the
interpreter's wait for executor threads at exit. On close it serves the queue while batches can still finish
before the deadline, and fails the rest at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from bot.queue import Job, SongQueue, Ticket, fail
from model.checkpoint import Bundle
from model.sample import Sample, Sampler, SampleRequest
from model.vocab import warm_up

log = logging.getLogger(__name__)

GATHER_SECONDS = 0.005  # how long a lone request waits for company before its batch starts
CLOSE_GRACE_SECONDS = 30.0  # how long close() lets the running batch finish
MAX_QUEUE = 500  # songs that may wait for a batch; one more is refused with QueueFullError
BATCH_TIMEOUT_SECONDS = 120.0  # a batch running longer has wedged: its songs fail and the worker is replaced

R = TypeVar("R")


class EngineError(Exception):
    """Base class of the engine's own errors."""


class ModelMissingError(EngineError):
    """There is no bundle file at the configured path: no model has been trained yet."""


class ModelNotLoadedError(EngineError):
    """A request arrived while no model is loaded."""


class EngineClosedError(EngineError):
    """The engine is shutting down and takes no more work."""


class QueueFullError(EngineError):
    """`max_queue` songs are already waiting; `wait` is about how many seconds until there is room."""

    def __init__(self, waiting: int, wait: float) -> None:
        super().__init__(f"{waiting} songs are waiting, the most the queue holds")
        self.waiting = waiting
        self.wait = wait


class GroupQueueFullError(QueueFullError):
    """One group (a server) already has its share of the queue waiting; the queue may still have room for others."""

    def __init__(self, waiting: int, share: int, wait: float) -> None:
        EngineError.__init__(self, f"{waiting} songs of this server are waiting, its share of the queue ({share})")
        self.waiting = waiting
        self.share = share
        self.wait = wait


class GenerationFailedError(EngineError):
    """The song was lost through no fault of its request (the batcher died, or its batch wedged): ask again."""


class SamplerLike(Protocol):
    """What the engine needs from `model.sample.Sampler` (tests may pass anything shaped like it)."""

    bundle: Bundle

    def generate(self, request: SampleRequest) -> Sample: ...

    def generate_many(self, requests: list[SampleRequest]) -> list[Sample]: ...


Loader = Callable[[Path, str], SamplerLike]


@dataclass(frozen=True)
class ModelInfo:
    """Which bundle is serving, for logs, replies and the songs table."""

    path: Path  # the file it was loaded from (or, once promoted, moved to)
    bundle: Bundle  # the loaded bundle itself (config, history, metrics): nothing re-reads the file
    precision: str | None = None  # what the network multiplies in while writing ("bfloat16", "float32")

    @property
    def bundle_hash(self) -> str:
        return self.bundle.sha256

    @property
    def metrics(self) -> dict[str, Any]:
        return self.bundle.metrics


@dataclass(frozen=True)
class Generation:
    """A sample together with the model that wrote it (a swap may happen while a request waits)."""

    sample: Sample
    model: ModelInfo


@dataclass
class EngineStats:
    """Counters, logged when the engine closes."""

    requests: int = 0  # samples written
    batches: int = 0  # forward-pass loops run (a batch of one counts too)
    largest_batch: int = 0
    batch_seconds: float = 0.0  # time spent in successful batches, all told
    longest_queue: int = 0  # the most songs waiting at once
    refused: int = 0  # QueueFullError
    failed_batches: int = 0  # batches lost to a timeout or a dead batcher
    batcher_restarts: int = 0


def load_sampler(path: Path, device: str, precision: str = "auto") -> Sampler:
    """The default loader: read the bundle and initialise jieba, both slow, both in the worker thread."""
    sampler = Sampler.load(path, device=device, precision=precision)
    warm_up()  # jieba's dictionary loads on first use (1-2 s); pay it now, not on the first request
    return sampler


def default_torch_threads() -> int:
    """All cores but one, so the event loop (heartbeats, HTTP) keeps a core to itself; but two on two cores.

    On two cores one torch thread left the second core mostly idle: the event loop needs little of it, and
    50 songs at once took 3.2 s with one thread against 2.6 s with two, heartbeats on time either way
    (bench/bench_bot.py, docs/figures.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))  # respects container CPU limits, unlike os.cpu_count()
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return cores if cores <= 2 else cores - 1


class Engine:
    """Owns the live sampler and the worker thread it runs on; see the module docstring."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        batching: bool = True,
        max_batch: int = 64,
        max_queue: int = MAX_QUEUE,
        group_share: int | None = None,
        batch_timeout: float = BATCH_TIMEOUT_SECONDS,
        torch_threads: int = 0,
        gather_seconds: float = GATHER_SECONDS,
        loader: Loader = load_sampler,
    ) -> None:
        self.device = device
        self.batching = batching
        self.max_batch = max_batch if batching else 1
        self.max_queue = max_queue
        # One group's (server's) songs waiting at once: half the queue unless told, so one busy server
        # cannot take every place.
        self.group_share = group_share or max(1, max_queue // 2)
        self.batch_timeout = batch_timeout
        self._gather_seconds = gather_seconds if batching else 0.0
        self._loader = loader
        self._threads = torch_threads or default_torch_threads()
        self._executor = self._new_executor()
        self._live: tuple[SamplerLike, ModelInfo] | None = None
        self._queue = SongQueue()  # the songs waiting (FIFO) and the batch running
        self._arrived = asyncio.Event()  # wakes an idle batcher
        self._batcher: asyncio.Task[None] | None = None  # started on first use, inside the running loop
        self._closed = False  # no more submits
        self._closing_by: float | None = None  # close()'s deadline (event loop time): no batch starts too late
        self.abandoned = False  # a batch still runs in a thread given up on, at close (see bot/__main__.py)
        self._given_up: list[Future[Any]] = []  # wedged batches whose threads were replaced
        self.stats = EngineStats()
        self._seconds_per_batch = 2.0  # running estimate, for "try again in N s"; refined by every batch

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="lyrics-engine",
            initializer=torch.set_num_threads,
            initargs=(self._threads,),
        )

    # ---- state

    @property
    def loaded(self) -> bool:
        return self._live is not None

    @property
    def info(self) -> ModelInfo | None:
        return self._live[1] if self._live else None

    @property
    def waiting(self) -> int:
        """Songs in the queue, not yet in a batch."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether a batch is being written right now."""
        return self._queue.busy

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
        path = Path(path)
        if not self._closed and not path.is_file():
            raise ModelMissingError(f"no model bundle at {path}")
        started = time.monotonic()
        info = self.go_live(await self.load_candidate(path), path)
        log.info(
            "loaded model %s (bundle %s, held-out bpc %s; writing in %s) in %.1fs",
            path,
            info.bundle_hash[:12],
            info.metrics.get("bpc", "?"),
            info.precision or "?",
            time.monotonic() - started,
        )
        return info

    async def load_candidate(self, path: str | os.PathLike[str]) -> SamplerLike:
        """Load the bundle at `path` in the worker thread without serving it (bot.promotion judges it first).

        Raises model.checkpoint.BundleError if it is not a usable bundle, EngineClosedError after close().
        """
        if self._closed:
            raise EngineClosedError("the engine is closed")
        return await self.on_worker(self._loader, Path(path), self.device)

    async def on_worker(self, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn(*args)` (a load, a re-score) in the worker thread, on the new one if it is replaced first.

        The worker thread is the only one that runs the live network: whatever uses it goes through here.
        Replacing a wedged thread cancels what was queued behind its batch; that work never started, so it is
        submitted again rather than lost to a CancelledError its caller did not ask for.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        while True:
            executor = self._executor
            try:
                return await loop.run_in_executor(executor, fn, *args)
            except asyncio.CancelledError:
                if task is not None and task.cancelling():
                    raise  # the caller was cancelled
                if self._closed:
                    raise EngineClosedError("the engine is closed") from None
                if executor is self._executor:
                    raise
                what = getattr(fn, "__name__", type(fn).__name__)
                log.info("the worker thread was replaced while %s waited for it; it runs on the new one", what)

    def go_live(self, sampler: SamplerLike, path: Path) -> ModelInfo:
        """Serve `sampler` (loaded by `load_candidate`), loaded from or moved to `path`, from the next batch on;
        the batch running finishes on the previous model."""
        info = ModelInfo(path=path, bundle=sampler.bundle, precision=getattr(sampler, "precision", None))
        self._live = (sampler, info)  # one assignment: the swap is atomic for the event loop
        return info

    # ---- generating

    def submit(self, request: SampleRequest, *, group: int | None = None) -> Ticket:
        """Queue `request` (FIFO) and return its ticket at once. `group` (a server's id) counts it against
        that group's share of the queue.

        Raises ModelNotLoadedError, EngineClosedError, QueueFullError when `max_queue` songs wait, or
        GroupQueueFullError when `group_share` of the group's do.
        """
        if self._closed:
            raise EngineClosedError("the bot is shutting down")
        if self._live is None:
            raise ModelNotLoadedError("no model is loaded")
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.stats.refused += 1
            raise QueueFullError(len(queue), self.estimated_wait(len(queue)))
        if group is not None and (mine := queue.waiting_of(group)) >= self.group_share:
            self.stats.refused += 1
            raise GroupQueueFullError(mine, self.group_share, self.estimated_wait(len(queue)))
        self._ensure_batcher()
        job = queue.add(request, asyncio.get_running_loop().create_future(), group)
        self.stats.longest_queue = max(self.stats.longest_queue, len(queue))
        self._arrived.set()
        return Ticket(queue, job)

    async def generate(self, request: SampleRequest) -> Generation:
        """`submit` and wait for the result (for callers that show no place in the queue)."""
        ticket = self.submit(request)
        try:
            return await ticket.result()
        finally:
            ticket.cancel()  # a no-op once done; withdraws the request if the caller gave up

    def _ensure_batcher(self) -> None:
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches(), name="lyrics-engine-batcher")
            self._batcher.add_done_callback(self._on_batcher_exit)

    def _on_batcher_exit(self, task: asyncio.Task[None]) -> None:
        """The batcher only returns when the engine closes; otherwise it died: fail what waits, start anew."""
        if self._closed or task.cancelled():
            return
        error = task.exception()
        lost = self._queue.fail_all(GenerationFailedError(f"the batcher died ({type(error).__name__})"))
        log.error("the batcher died; %d songs fail and a new batcher starts", lost, exc_info=error)
        self.stats.batcher_restarts += 1
        self.stats.failed_batches += 1
        self._batcher = None  # the next submit() starts a new one

    async def _run_batches(self) -> None:
        """The batcher: take the oldest waiting songs (up to max_batch), run them in the worker thread, repeat.

        Once close() was called it goes on while another batch is likely to finish before close()'s deadline,
        then fails what still waits and returns.
        """
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            if self._closing_by is not None and (not queue or self._closing_by - loop.time() < self._seconds_per_batch):
                queue.fail_waiting(EngineClosedError("the bot is shutting down"))
                return
            if not queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self._gather_seconds and len(queue) < self.max_batch:
                await asyncio.sleep(self._gather_seconds)  # company arriving within milliseconds shares the batch
            jobs = queue.take(self.max_batch)
            if jobs:
                # Not in a `finally`: if this raises, `queue.running` still names the songs the batcher's
                # done callback (or close(), on cancellation) must fail.
                await self._run_batch(jobs)
            queue.finish(jobs)

    async def _run_batch(self, jobs: list[Job]) -> None:
        live = self._live  # read once: a swap during the batch does not affect it
        if live is None:
            fail(jobs, ModelNotLoadedError("no model is loaded"))
            return
        sampler, info = live
        requests = [job.request for job in jobs]
        started = time.monotonic()
        try:
            if len(jobs) == 1:
                samples = [await self._in_worker(sampler.generate, requests[0])]
            else:
                samples = await self._in_worker(sampler.generate_many, requests)
            if len(samples) != len(jobs):
                raise RuntimeError(f"the sampler returned {len(samples)} songs for {len(jobs)} requests")
        except GenerationFailedError as exc:  # wedged: retrying would wedge again
            self.stats.failed_batches += 1
            fail(jobs, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any failure is handed to the askers, never lost
            if len(jobs) == 1:
                fail(jobs, exc)
                return
            # One bad request must not fail the others: retry them one by one.
            log.warning("a batch of %d failed (%s: %s); retrying one by one", len(jobs), type(exc).__name__, exc)
            for job in jobs:
                await self._run_batch([job])
            return
        elapsed = time.monotonic() - started
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed
        log.debug("batch of %d in %.2fs (%d waiting)", len(jobs), elapsed, len(self._queue))
        self.stats.requests += len(jobs)
        self.stats.batches += 1
        self.stats.batch_seconds += elapsed
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
        for job, sample in zip(jobs, samples, strict=True):
            if not job.future.done():
                job.future.set_result(Generation(sample, info))

    async def _in_worker(self, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn(*args)` in the worker thread; past `batch_timeout`, give up on it and replace the thread."""
        running = self._executor.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(running), self.batch_timeout)
        except TimeoutError:
            # A thread cannot be stopped: leave it to finish (or not) and give later batches a fresh one.
            # Both threads then hold the same sampler; its modules only read their weights.
            log.error("a batch ran past %.0fs; its songs fail and the worker thread is replaced", self.batch_timeout)
            self._given_up = [*(f for f in self._given_up if not f.done()), running]
            stuck, self._executor = self._executor, self._new_executor()
            stuck.shutdown(wait=False, cancel_futures=True)
            raise GenerationFailedError(f"writing took longer than {self.batch_timeout:.0f}s") from None

    # ---- shutting down

    async def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Take no more requests; serve the queue for up to `grace` seconds, failing at once what could not
        be finished in time, then stop the worker thread. Idempotent.

        A batch still running after `grace` is abandoned in its thread (its songs fail with EngineClosedError,
        and `abandoned` is set: a process that must exit now cannot wait for that thread). So is a wedged
        batch given up on earlier whose thread still runs.
        """
        if self._closed:
            return
        self._closed = True
        self._closing_by = asyncio.get_running_loop().time() + grace
        self._arrived.set()  # an idle batcher wakes, sees the engine closing, and returns
        if self._batcher is not None and not self._batcher.done():
            done, _ = await asyncio.wait({self._batcher}, timeout=grace)
            if not done:
                log.warning("the running batch did not finish within %.1fs; abandoning it", grace)
                self.abandoned = True
                self._batcher.cancel()
                self._queue.fail_all(EngineClosedError("the bot is shutting down"))
        self._queue.fail_waiting(EngineClosedError("the bot is shutting down"))
        # Waits for the thread to go idle (unless abandoned); in a thread so the event loop stays responsive.
        await asyncio.to_thread(self._executor.shutdown, wait=not self.abandoned, cancel_futures=True)
        if any(not work.done() for work in self._given_up):
            log.warning("a wedged batch still runs in a worker thread the engine gave up on")
            self.abandoned = True
        self._live = None
        stats = self.stats
        log.info(
            "engine closed after %d songs in %d batches (largest %d, longest queue %d, %d refused, %d failed batches)",
            stats.requests,
            stats.batches,
            stats.largest_batch,
            stats.longest_queue,
            stats.refused,
            stats.failed_batches,
        )
