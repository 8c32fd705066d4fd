"""The one owner of the live model: a FIFO queue, one worker thread, batched generation, hot swaps, promotions.

    engine = Engine(device="cpu", max_queue=500)
    await engine.load("models/lyrics.pt")            # in the worker thread; raises ModelMissingError, BundleError
    ticket = engine.submit(SampleRequest(seed="窗外的麻雀", ...))   # QueueFullError when max_queue songs wait
    async for place in ticket.places():              # 1, 2, ...: its place while a batch runs without it
        ...
    generation = await ticket.result()               # .sample, and .model that wrote it
    promotion = await engine.promote("models/lyrics.candidate.pt", "models/lyrics.pt", force=False)
    await engine.close()

While the bot runs, a new model goes live through `promote`: it loads the candidate once, compares
it with the live model, and only then touches files (the old bundle kept as *.previous, the new one moved
in by os.replace) and swaps; requests already running finish on the old model. Two held-out scores
compare only on the same held-out text: when the live model was scored on another (another base corpus),
`promote` has it re-scored on the candidate's first, in the worker thread, between two batches.

Why one thread: torch modules are not safe to run concurrently from several threads, and a single
worker keeps requests in a fair FIFO order. Why batches: an RNN step costs nearly the same for 1 or
32 sequences, so requests that arrive while a batch runs (or within a few milliseconds of each other)
are gathered and run together through `Sampler.generate_many`. The event loop only ever awaits
futures, so heartbeats and other interactions keep flowing while the model works.

The queue is bounded by its length (`max_queue` songs waiting), not by what is in flight: a burst waits
its turn instead of being refused. It never wedges: a batch that runs past `batch_timeout` fails with
GenerationFailedError and the next batch gets a fresh worker thread (a load or re-score queued behind the
wedged batch moves to the fresh thread: it never started); if the batcher task itself dies, every song waiting
fails with GenerationFailedError and a new batcher starts. A thread cannot be stopped, so the wedged one is
left to end on its own (its executor is shut down: the thread exits once its batch returns); one still running
when the engine closes sets `abandoned`, and `python -m bot` then exits with os._exit once the database is
closed, rather than hang in the interpreter's wait for executor threads at exit. On close it serves the
queue while batches can still finish before the deadline, and fails the rest at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import math
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from model.checkpoint import Bundle
from model.errors import first_line
from model.files import fsync_dir
from model.sample import Sample, Sampler, SampleRequest
from model.vocab import warm_up

log = logging.getLogger(__name__)

GATHER_SECONDS = 0.005  # how long a lone request waits for company before its batch starts
CLOSE_GRACE_SECONDS = 30.0  # how long close() lets the running batch finish
MAX_QUEUE = 500  # songs that may wait for a batch; one more is refused with QueueFullError
PLACE_STEP = 10  # a shown place is updated when it moves up by 1/PLACE_STEP of itself (or by one)
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
class SwapDecision:
    """Whether the candidate replaces the live model, and why, in a sentence with the numbers."""

    swap: bool
    reason: str


@dataclass(frozen=True)
class Promotion:
    """What `Engine.promote` did with a candidate bundle."""

    candidate: Bundle  # loaded once, for the decision and for the report
    live: ModelInfo | None  # what served before (and still serves unless swapped)
    decision: SwapDecision
    swapped: bool = False
    error: str | None = None  # why a swap that was decided did not happen (the old model keeps serving)
    rescored: dict[str, Any] | None = None  # the live model's metrics on the candidate's held-out text
    rescore_error: str | None = None  # why re-scoring the live model failed (then nothing compares)

    @property
    def live_metrics(self) -> dict[str, Any] | None:
        """The live model's metrics the decision compared: re-scored ones if it was re-scored."""
        if self.rescored is not None:
            return self.rescored
        return self.live.metrics if self.live is not None else None


# Scores the live bundle (first argument) on the held-out text of the candidate (second); runs in the worker
# thread, so it may use the live network. Raises what it likes: the engine reports it, nothing swaps.
Rescorer = Callable[[Bundle, Bundle], dict[str, Any]]


def same_heldout(live: Bundle, candidate: Bundle) -> bool:
    """Whether two bundles' held-out scores are on the same text: the same base corpus, split the same way."""

    def fraction(bundle: Bundle) -> float:
        return bundle.heldout_fraction

    return live.corpus_sha256 == candidate.corpus_sha256 and fraction(live) == fraction(candidate)


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


class _State(enum.Enum):
    WAITING = "waiting"  # in the queue
    RUNNING = "running"  # in the batch the worker thread is writing
    DONE = "done"  # its future is settled


@dataclass(eq=False)  # identity, not field equality: jobs are found in the queue by `is`
class _Job:
    request: SampleRequest
    future: asyncio.Future[Generation] = field(repr=False)
    place: int = 0  # 1-based place in the queue while WAITING
    group: int | None = None  # whose share of the queue it counts against (a server); None: nobody's
    state: _State = _State.WAITING


class Ticket:
    """One request in the engine: where it waits, then its song. Made by `Engine.submit`."""

    def __init__(self, engine: Engine, job: _Job) -> None:
        self._engine = engine
        self._job = job

    @property
    def place(self) -> int | None:
        """Its 1-based place among the songs waiting for a batch; None once its batch has started."""
        return self._job.place if self._job.state is _State.WAITING else None

    @property
    def done(self) -> bool:
        return self._job.future.done()

    async def places(self, interval: float = 0.0) -> AsyncIterator[int]:
        """Its place while a batch runs without it (at most once per `interval` s), each time it moves up by
        a tenth or more of the place last yielded (by one, near the front): with hundreds waiting, hundreds of
        edits a second would compete with the writing for the event loop and Discord's rate limits.

        Ends when its own batch starts (or it fails). A request the batcher is about to take, with no
        batch running, yields nothing: it does not really wait.
        """
        engine, job = self._engine, self._job
        shown: int | None = None
        while job.state is _State.WAITING:
            if engine.busy and (shown is None or shown - job.place >= max(1, shown // PLACE_STEP)):
                shown = job.place
                yield shown
                until = time.monotonic() + interval
                while job.state is _State.WAITING and (left := until - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(engine._moved.wait(), left)
                continue
            await engine._moved.wait()

    async def result(self) -> Generation:
        """Its song and the model that wrote it. Raises ModelNotLoadedError, EngineClosedError,
        GenerationFailedError, or what the sampler raised for this request (model.sample.SamplingError)."""
        return await asyncio.shield(self._job.future)  # cancelling the waiter leaves the job to cancel()

    def cancel(self) -> None:
        """Withdraw the request: out of the queue if it waits; its result is dropped if it runs. Idempotent."""
        self._engine._withdraw(self._job)


def load_sampler(path: Path, device: str, precision: str = "auto") -> Sampler:
    """The default loader: read the bundle and initialise jieba, both slow, both in the worker thread."""
    sampler = Sampler.load(path, device=device, precision=precision)
    warm_up()  # jieba's dictionary loads on first use (1-2 s); pay it now, not on the first request
    return sampler


def metric(metrics: dict[str, Any] | None, key: str) -> float | None:
    """A finite number from a bundle's metrics, or None."""
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def decide_swap(live: dict[str, Any] | None, candidate: dict[str, Any], *, force: bool) -> SwapDecision:
    """Compare held-out bits per character (metrics["bpc"], lower is better) of the live and the new model."""
    new = metric(candidate, "bpc")
    old = metric(live, "bpc") if live is not None else None
    if live is None:
        return SwapDecision(True, "There was no live model, so the new one is now live.")
    if force:
        return SwapDecision(True, "force:true was given, so the new model is now live whatever its score.")
    if new is None:
        return SwapDecision(False, "The new model has no held-out bpc to compare, so the live model stays.")
    if old is None:
        return SwapDecision(True, "The live model has no held-out bpc to compare against, so the new one is now live.")
    if new < old:
        return SwapDecision(True, f"The new model is better ({new:.3f} < {old:.3f} bpc), so it is now live.")
    return SwapDecision(
        False,
        f"The live model stays: its held-out bpc {old:.3f} is not worse than the new model's "
        f"{new:.3f} (lower is better). Use force:true to swap anyway.",
    )


def sibling(path: Path, tag: str) -> Path:
    """models/lyrics.pt -> models/lyrics.<tag>.pt: beside the live bundle, so os.replace onto it is atomic."""
    return path.with_name(f"{path.stem}.{tag}{path.suffix or '.pt'}")


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
        self._waiting: deque[_Job] = deque()  # the FIFO queue, oldest first
        self._running: list[_Job] = []  # the batch in the worker thread right now
        # Set (and replaced) whenever the queue moves: a batch starts, a request leaves, everything fails.
        self._moved = asyncio.Event()
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
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        """Whether a batch is being written right now."""
        return bool(self._running)

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
        sampler = await self._load_sampler(path)
        info = self._go_live(sampler, path)
        log.info(
            "loaded model %s (bundle %s, %s; writing in %s) in %.1fs",
            path,
            info.bundle_hash[:12],
            _describe_metrics(info.metrics),
            info.precision or "?",
            time.monotonic() - started,
        )
        return info

    async def promote(
        self,
        candidate: str | os.PathLike[str],
        live: str | os.PathLike[str],
        *,
        force: bool = False,
        rescore: Rescorer | None = None,
    ) -> Promotion:
        """Make the bundle at `candidate` the live model if it is better than the one serving (or `force`).

        In order: load the candidate (once, in the worker thread); if the live model was scored on other
        held-out text (`same_heldout`), re-score it on the candidate's with `rescore`, in the worker
        thread too; compare held-out bpc; if the candidate wins, move it onto `live` with os.replace (the
        old file kept as *.previous) and swap it in. Raises model.checkpoint.BundleError if the candidate
        cannot be loaded, and then nothing has changed. A re-score that fails keeps the live model (the
        scores do not compare) unless `force`. A failure while moving the files is put back and reported
        in `Promotion.error`: the files and the live model stay as they were, so a restart serves what
        serves now.
        """
        if self._closed:
            raise EngineClosedError("the engine is closed")
        candidate, live = Path(candidate), Path(live)
        sampler = await self._load_sampler(candidate)
        new = sampler.bundle
        before = self.info
        rescored, rescore_error = None, None
        if before is not None and rescore is not None and not same_heldout(before.bundle, new):
            try:
                rescored = await self._rescore(rescore, before.bundle, new)
            except Exception as exc:  # noqa: BLE001 - any failure means the scores do not compare; it is reported
                log.error("could not re-score the live model on the new held-out text: %s", exc)
                rescore_error = first_line(exc)
        if rescore_error is not None and not force:
            decision = SwapDecision(
                False,
                "The live model was scored on other held-out text and re-scoring it failed "
                f"({rescore_error}), so the two cannot be compared: the live model stays. "
                "Use force:true to swap anyway.",
            )
        else:
            live_metrics = rescored if rescored is not None else before.metrics if before else None
            decision = decide_swap(live_metrics, new.metrics, force=force)
        promotion = Promotion(new, before, decision, rescored=rescored, rescore_error=rescore_error)
        if not decision.swap:
            return promotion
        try:
            await asyncio.to_thread(_replace_keeping_previous, candidate, live)
        except OSError as exc:
            log.error("could not move %s onto %s: %s", candidate, live, exc)
            return dataclasses.replace(promotion, error=str(exc))
        info = self._go_live(sampler, live)
        log.info(
            "promoted %s: bundle %s (%s) is live%s",
            candidate,
            info.bundle_hash[:12],
            _describe_metrics(info.metrics),
            f", replacing {before.bundle_hash[:12]}" if before else "",
        )
        return dataclasses.replace(promotion, swapped=True)

    async def _rescore(self, rescore: Rescorer, live: Bundle, candidate: Bundle) -> dict[str, Any]:
        """Run `rescore` in the worker thread: it may use the live network, which only that thread runs."""
        started = time.monotonic()
        figures = await self._on_worker(rescore, live, candidate)
        log.info(
            "re-scored the live model on the new held-out text in %.1fs: %s",
            time.monotonic() - started,
            _describe_metrics(figures),
        )
        return figures

    async def _load_sampler(self, path: Path) -> SamplerLike:
        return await self._on_worker(self._loader, path, self.device)

    async def _on_worker(self, fn: Callable[..., R], *args: Any) -> R:
        """Run `fn(*args)` (a load, a re-score) in the worker thread, on the new one if it is replaced first.

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

    def _go_live(self, sampler: SamplerLike, path: Path) -> ModelInfo:
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
        if len(self._waiting) >= self.max_queue:
            self.stats.refused += 1
            raise QueueFullError(len(self._waiting), self.estimated_wait(len(self._waiting)))
        if group is not None and (mine := sum(job.group == group for job in self._waiting)) >= self.group_share:
            self.stats.refused += 1
            raise GroupQueueFullError(mine, self.group_share, self.estimated_wait(len(self._waiting)))
        self._ensure_batcher()
        job = _Job(request, asyncio.get_running_loop().create_future(), place=len(self._waiting) + 1, group=group)
        self._waiting.append(job)
        self.stats.longest_queue = max(self.stats.longest_queue, len(self._waiting))
        self._arrived.set()
        return Ticket(self, job)

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
        lost = [*self._running, *self._waiting]
        log.error("the batcher died; %d songs fail and a new batcher starts", len(lost), exc_info=error)
        self.stats.batcher_restarts += 1
        self.stats.failed_batches += 1
        self._running = []
        self._waiting.clear()
        _fail(lost, GenerationFailedError(f"the batcher died ({type(error).__name__})"))
        self._moved_now()
        self._batcher = None  # the next submit() starts a new one

    def _moved_now(self) -> None:
        """Wake everything watching the queue (tickets' places, close())."""
        self._moved.set()
        self._moved = asyncio.Event()

    def _withdraw(self, job: _Job) -> None:
        if job.state is _State.WAITING:
            with contextlib.suppress(ValueError):
                self._waiting.remove(job)
            self._renumber()
            self._moved_now()
        if not job.future.done():
            job.future.cancel()
        job.state = _State.DONE

    def _renumber(self) -> None:
        for place, job in enumerate(self._waiting, 1):
            job.place = place

    async def _run_batches(self) -> None:
        """The batcher: take the oldest waiting songs (up to max_batch), run them in the worker thread, repeat.

        Once close() was called it goes on while another batch is likely to finish before close()'s deadline,
        then fails what still waits and returns.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._closing_by is not None and (
                not self._waiting or self._closing_by - loop.time() < self._seconds_per_batch
            ):
                waiting = list(self._waiting)
                self._waiting.clear()
                _fail(waiting, EngineClosedError("the bot is shutting down"))
                self._moved_now()
                return
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self._gather_seconds and len(self._waiting) < self.max_batch:
                await asyncio.sleep(self._gather_seconds)  # company arriving within milliseconds shares the batch
            jobs: list[_Job] = []
            while self._waiting and len(jobs) < self.max_batch:
                job = self._waiting.popleft()
                if not job.future.done():  # withdrawn meanwhile
                    job.state = _State.RUNNING
                    jobs.append(job)
            self._running = jobs
            self._renumber()
            self._moved_now()
            if jobs:
                # Not in a `finally`: if this raises, `_running` still names the songs the batcher's
                # done callback (or close(), on cancellation) must fail.
                await self._run_batch(jobs)
            self._running = []
            for job in jobs:
                job.state = _State.DONE
            self._moved_now()

    async def _run_batch(self, jobs: list[_Job]) -> None:
        live = self._live  # read once: a swap during the batch does not affect it
        if live is None:
            _fail(jobs, ModelNotLoadedError("no model is loaded"))
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
            _fail(jobs, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any failure is handed to the askers, never lost
            if len(jobs) == 1:
                _fail(jobs, exc)
                return
            # One bad request must not fail the others: retry them one by one.
            log.warning("a batch of %d failed (%s: %s); retrying one by one", len(jobs), type(exc).__name__, exc)
            for job in jobs:
                await self._run_batch([job])
            return
        elapsed = time.monotonic() - started
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed
        log.debug("batch of %d in %.2fs (%d waiting)", len(jobs), elapsed, len(self._waiting))
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
                _fail([*self._running, *self._waiting], EngineClosedError("the bot is shutting down"))
        else:
            _fail(list(self._waiting), EngineClosedError("the bot is shutting down"))
        self._waiting.clear()
        self._moved_now()
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


def _replace_keeping_previous(candidate: Path, live: Path) -> None:
    """Move `candidate` onto `live`; the old `live`, if any, becomes *.previous. All or nothing.

    The old file gets its second name under a temporary one first, so that if the move fails nothing
    has changed, not even *.previous.
    """
    previous = sibling(live, "previous")
    kept = previous.with_name(f".{previous.name}.tmp")
    if live.is_file():
        kept.unlink(missing_ok=True)
        try:
            os.link(live, kept)  # a second name for the old file: instant, no copy
        except OSError:  # a filesystem without hard links
            shutil.copy2(live, kept)
    try:
        os.replace(candidate, live)  # same folder: readers see the old file or the new one, never half
    except OSError:
        kept.unlink(missing_ok=True)
        raise
    # The new model is in place: what follows only tidies up, and must not undo the promotion.
    try:
        if kept.exists():
            os.replace(kept, previous)
        fsync_dir(live.parent)
    except OSError as exc:
        log.warning("the new model is in place, but keeping the old one as %s failed: %s", previous, exc)


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        job.state = _State.DONE
        if not job.future.done():
            job.future.set_exception(exc)


def _describe_metrics(metrics: dict[str, Any]) -> str:
    parts = [f"{key} {value:.3f}" for key, value in metrics.items() if isinstance(value, float)][:3]
    return ", ".join(parts) or "no metrics"
