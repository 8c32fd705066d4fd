"""The songs waiting for the engine: a FIFO line that knows each song's place and each server's share, and the
`Ticket` a request is answered with. No threads and no model: bot/engine.py takes batches from it.

A job is WAITING in the line, RUNNING in the batch the worker thread writes, then DONE (its future settled).
Whenever the line moves (a batch starts or ends, a request leaves, everything fails), `moved` wakes those who
watch it: tickets showing their place, and the engine's close().
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from model.sample import SampleRequest

if TYPE_CHECKING:
    from bot.engine import Generation

PLACE_STEP = 10  # a shown place is updated when it moves up by 1/PLACE_STEP of itself (or by one)


class JobState(enum.Enum):
    WAITING = "waiting"  # in the queue
    RUNNING = "running"  # in the batch the worker thread is writing
    DONE = "done"  # its future is settled


@dataclass(eq=False)  # identity, not field equality: jobs are found in the queue by `is`
class Job:
    request: SampleRequest
    future: asyncio.Future[Generation] = field(repr=False)
    place: int = 0  # 1-based place in the queue while WAITING
    group: int | None = None  # whose share of the queue it counts against (a server); None: nobody's
    state: JobState = JobState.WAITING


class SongQueue:
    """The songs waiting (oldest first) and the batch running; bounds and refusals are the engine's."""

    def __init__(self) -> None:
        self.waiting: deque[Job] = deque()
        self.running: list[Job] = []  # the batch in the worker thread right now
        self._moved = asyncio.Event()  # set (and replaced) whenever the queue moves

    def __len__(self) -> int:
        return len(self.waiting)

    @property
    def busy(self) -> bool:
        """Whether a batch is being written right now."""
        return bool(self.running)

    def waiting_of(self, group: int) -> int:
        """How many of `group`'s songs wait: its share of the queue is counted against this."""
        return sum(job.group == group for job in self.waiting)

    def add(self, request: SampleRequest, future: asyncio.Future[Generation], group: int | None) -> Job:
        """Put a request at the back of the line."""
        job = Job(request, future, place=len(self.waiting) + 1, group=group)
        self.waiting.append(job)
        return job

    def take(self, most: int) -> list[Job]:
        """Start a batch: the oldest `most` songs still wanted leave the line and run; the rest move up."""
        jobs: list[Job] = []
        while self.waiting and len(jobs) < most:
            job = self.waiting.popleft()
            if not job.future.done():  # withdrawn meanwhile
                job.state = JobState.RUNNING
                jobs.append(job)
        self.running = jobs
        self._renumber()
        self.moved_now()
        return jobs

    def finish(self, jobs: list[Job]) -> None:
        """The batch `take` started is over (its futures are settled)."""
        self.running = []
        for job in jobs:
            job.state = JobState.DONE
        self.moved_now()

    def withdraw(self, job: Job) -> None:
        """Out of the line if it waits; its future cancelled if it runs (its song is then dropped). Idempotent."""
        if job.state is JobState.WAITING:
            with contextlib.suppress(ValueError):
                self.waiting.remove(job)
            self._renumber()
            self.moved_now()
        if not job.future.done():
            job.future.cancel()
        job.state = JobState.DONE

    def fail_waiting(self, exc: BaseException) -> int:
        """Fail every song that waits with `exc`; returns how many."""
        lost = list(self.waiting)
        self.waiting.clear()
        fail(lost, exc)
        self.moved_now()
        return len(lost)

    def fail_all(self, exc: BaseException) -> int:
        """Fail every song, running or waiting, with `exc`; returns how many."""
        running, self.running = self.running, []
        fail(running, exc)
        return len(running) + self.fail_waiting(exc)

    def moved_now(self) -> None:
        """Wake everything watching the queue (tickets' places, the engine's close())."""
        self._moved.set()
        self._moved = asyncio.Event()

    def moved(self) -> Coroutine[Any, Any, Literal[True]]:
        """An awaitable that returns the next time the queue moves (from now: the event is the current one,
        even if the awaitable first runs later, as in asyncio.wait_for's task)."""
        return self._moved.wait()

    def _renumber(self) -> None:
        for place, job in enumerate(self.waiting, 1):
            job.place = place


class Ticket:
    """One request in the engine: where it waits, then its song. Made by `Engine.submit`."""

    def __init__(self, queue: SongQueue, job: Job) -> None:
        self._queue = queue
        self._job = job

    @property
    def place(self) -> int | None:
        """Its 1-based place among the songs waiting for a batch; None once its batch has started."""
        return self._job.place if self._job.state is JobState.WAITING else None

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
        queue, job = self._queue, self._job
        shown: int | None = None
        while job.state is JobState.WAITING:
            if queue.busy and (shown is None or shown - job.place >= max(1, shown // PLACE_STEP)):
                shown = job.place
                yield shown
                until = time.monotonic() + interval
                while job.state is JobState.WAITING and (left := until - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(queue.moved(), left)
                continue
            await queue.moved()

    async def result(self) -> Generation:
        """Its song and the model that wrote it. Raises ModelNotLoadedError, EngineClosedError,
        GenerationFailedError, or what the sampler raised for this request (model.sample.SamplingError)."""
        return await asyncio.shield(self._job.future)  # cancelling the waiter leaves the job to cancel()

    def cancel(self) -> None:
        """Withdraw the request: out of the queue if it waits; its result is dropped if it runs. Idempotent."""
        self._queue.withdraw(self._job)


def fail(jobs: list[Job], exc: BaseException) -> None:
    """Settle each job's future with `exc` (those not settled already)."""
    for job in jobs:
        job.state = JobState.DONE
        if not job.future.done():
            job.future.set_exception(exc)
