"""The engine's batching, swapping, promoting and shutting down, with stand-in samplers the test controls.

The end-to-end tests (exts/test_lyrics.py, exts/test_training.py) run the real sampler; here `Engine(loader=...)`,
the engine's own seam, hands it samplers that record their batches and can be held mid-batch.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path

import pytest

from bot.engine import (
    Engine,
    EngineClosedError,
    Generation,
    GenerationFailedError,
    GroupQueueFullError,
    ModelMissingError,
    ModelNotLoadedError,
    QueueFullError,
)
from model.checkpoint import BundleError
from model.sample import SampleRequest, SamplingError
from tests.bot.helpers import StandInSampler, SteppedSampler


@pytest.fixture
def bundles(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name in ("a", "b"):
        paths[name] = tmp_path / f"{name}.pt"
        paths[name].write_bytes(b"stand-in")  # the engine checks the file exists before loading
    return paths


def make_engine(samplers: dict[str, StandInSampler], **options) -> Engine:
    return Engine(loader=lambda path, device: samplers[path.stem], torch_threads=1, **options)


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def request(seed: str) -> SampleRequest:
    return SampleRequest(seed=seed, length=5)


async def test_requests_arriving_together_share_a_batch(bundles) -> None:
    sampler = StandInSampler("a", hold=True)
    engine = make_engine({"a": sampler})
    await engine.load(bundles["a"])
    first = asyncio.create_task(engine.generate(request("0")))
    await until(sampler.started.is_set)  # the first batch is running ...
    rest = [asyncio.create_task(engine.generate(request(str(i)))) for i in range(1, 6)]
    await asyncio.sleep(0.02)
    sampler.gate.set()  # ... and the five that arrived meanwhile run together next
    results = await asyncio.gather(first, *rest)
    assert [g.sample.text for g in results] == [f"a:{i}" for i in range(6)]  # each asker gets its own song
    assert sampler.batches == [["0"], ["1", "2", "3", "4", "5"]]
    assert (engine.stats.requests, engine.stats.batches, engine.stats.largest_batch) == (6, 2, 5)
    await engine.close()


async def test_batch_size_is_capped_and_batching_can_be_switched_off(bundles) -> None:
    sampler = StandInSampler("a")
    engine = make_engine({"a": sampler}, max_batch=3)
    await engine.load(bundles["a"])
    await asyncio.gather(*(engine.generate(request(str(i))) for i in range(7)))
    assert [len(b) for b in sampler.batches] == [3, 3, 1]
    await engine.close()

    sampler = StandInSampler("a")
    engine = make_engine({"a": sampler}, batching=False)
    await engine.load(bundles["a"])
    await asyncio.gather(*(engine.generate(request(str(i))) for i in range(4)))
    assert sampler.batches == [["0"], ["1"], ["2"], ["3"]]
    await engine.close()


async def test_a_bad_request_fails_only_itself(bundles) -> None:
    engine = make_engine({"a": StandInSampler("a")})
    await engine.load(bundles["a"])
    results = await asyncio.gather(*(engine.generate(request(s)) for s in ("x", "bad", "y")), return_exceptions=True)
    assert [r.sample.text if isinstance(r, Generation) else type(r) for r in results] == ["a:x", SamplingError, "a:y"]
    await engine.close()


async def test_swap_lets_running_requests_finish_on_the_old_model(bundles) -> None:
    old, new = StandInSampler("a", hold=True), StandInSampler("b")
    engine = make_engine({"a": old, "b": new})
    await engine.load(bundles["a"])
    running = asyncio.create_task(engine.generate(request("x")))
    await until(old.started.is_set)
    swapping = asyncio.create_task(engine.load(bundles["b"]))
    await asyncio.sleep(0.02)
    assert engine.info.bundle_hash == "a"  # the new model is not live until it has loaded
    old.gate.set()
    finished = await running
    assert (finished.sample.text, finished.model.bundle_hash) == ("a:x", "a")
    info = await swapping
    assert info.bundle_hash == "b" and engine.info == info
    assert (await engine.generate(request("y"))).sample.text == "b:y"
    await engine.close()


async def test_loading_errors_keep_the_live_model(bundles, tmp_path: Path) -> None:
    engine = Engine(torch_threads=1)  # the real loader
    with pytest.raises(ModelNotLoadedError):
        await engine.generate(request("x"))
    with pytest.raises(ModelMissingError):
        await engine.load(tmp_path / "absent.pt")
    with pytest.raises(BundleError):
        await engine.load(bundles["a"])  # "stand-in" bytes are no bundle
    assert not engine.loaded and engine.info is None
    await engine.close()


async def test_close_finishes_the_running_batch_and_fails_what_it_has_no_time_for(bundles) -> None:
    sampler = StandInSampler("a", hold=True)
    engine = make_engine({"a": sampler})
    await engine.load(bundles["a"])
    running = asyncio.create_task(engine.generate(request("x")))
    await until(sampler.started.is_set)
    queued = asyncio.create_task(engine.generate(request("y")))
    await asyncio.sleep(0.02)
    closing = asyncio.create_task(engine.close(grace=1.0))  # less than a batch is expected to take (2 s at first)
    await asyncio.sleep(0.02)
    sampler.gate.set()
    await closing
    assert (await running).sample.text == "a:x"
    with pytest.raises(EngineClosedError):
        await queued
    with pytest.raises(EngineClosedError):
        await engine.generate(request("z"))
    with pytest.raises(EngineClosedError):
        await engine.load(bundles["a"])
    await engine.close()  # twice is fine


async def test_the_event_loop_keeps_running_during_a_batch(bundles) -> None:
    engine = make_engine({"a": StandInSampler("a", delay=0.5)})
    await engine.load(bundles["a"])
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await engine.generate(request("x"))
    ticker.cancel()
    assert len(ticks) > 20 and max(b - a for a, b in itertools.pairwise(ticks)) < 0.2
    await engine.close()


# ---------------------------------------------------------------------------------------------
# the queue: places, a bound on its length, and never wedging


async def test_waiting_songs_see_their_place_move_up(bundles) -> None:
    sampler = SteppedSampler("a")
    engine = make_engine({"a": sampler}, max_batch=2)
    await engine.load(bundles["a"])
    first = engine.submit(request("0"))
    await until(lambda: len(sampler.batches) == 1)  # a batch of one runs; the next five wait
    tickets = [engine.submit(request(str(i))) for i in range(1, 6)]
    assert [t.place for t in tickets] == [1, 2, 3, 4, 5] and first.place is None
    seen: dict[int, list[int]] = {i: [] for i in range(5)}

    async def watch(i: int) -> None:
        async for place in tickets[i].places():
            seen[i].append(place)

    watchers = [asyncio.create_task(watch(i)) for i in range(5)]
    for batches in (2, 3, 4):
        await asyncio.sleep(0.05)  # the watchers see the places while this batch runs
        sampler.step()
        await until(lambda: len(sampler.batches) == batches)  # noqa: B023 - awaited before the next iteration
    sampler.step()
    results = await asyncio.gather(first.result(), *(t.result() for t in tickets), *watchers)
    assert [g.sample.text for g in results[:6]] == [f"a:{i}" for i in range(6)]  # first in, first out
    assert sampler.batches == [["0"], ["1", "2"], ["3", "4"], ["5"]]
    # Each saw its place while a batch ran without it, moving up as batches started.
    assert seen == {0: [1], 1: [2], 2: [3, 1], 3: [4, 2], 4: [5, 3, 1]}
    await engine.close()


async def test_the_queue_is_bounded_by_its_length(bundles) -> None:
    sampler = StandInSampler("a", hold=True)
    engine = make_engine({"a": sampler}, max_batch=4, max_queue=3)
    await engine.load(bundles["a"])
    running = engine.submit(request("r"))
    await until(sampler.started.is_set)
    queued = [engine.submit(request(str(i))) for i in range(3)]
    with pytest.raises(QueueFullError) as refused:
        engine.submit(request("one too many"))
    assert refused.value.waiting == 3 and refused.value.wait > 0
    queued[1].cancel()  # a member who gave up makes room, and those behind move up
    assert [t.place for t in queued] == [1, None, 2]
    late = engine.submit(request("late"))
    sampler.gate.set()
    assert [(await t.result()).sample.text for t in (running, queued[0], queued[2], late)] == [
        "a:r",
        "a:0",
        "a:2",
        "a:late",
    ]
    assert sampler.batches == [["r"], ["0", "2", "late"]] and engine.stats.refused == 1
    await engine.close()


async def test_each_group_gets_a_share_of_the_queue(bundles) -> None:
    sampler = StandInSampler("a", hold=True)
    engine = make_engine({"a": sampler}, max_batch=4, max_queue=4)  # the default share: half, two songs
    await engine.load(bundles["a"])
    running = engine.submit(request("r"), group=1)
    await until(sampler.started.is_set)
    mine = [engine.submit(request(str(i)), group=1) for i in range(2)]
    with pytest.raises(GroupQueueFullError) as refused:
        engine.submit(request("a third of group 1"), group=1)
    assert (refused.value.waiting, refused.value.share) == (2, 2) and refused.value.wait > 0
    theirs = [engine.submit(request("2")), engine.submit(request("3"), group=2)]  # others still get in
    with pytest.raises(QueueFullError) as full:
        engine.submit(request("4"), group=3)
    assert not isinstance(full.value, GroupQueueFullError)  # now the whole queue is full
    sampler.gate.set()
    await asyncio.gather(*(t.result() for t in (running, *mine, *theirs)))
    assert engine.stats.refused == 2
    await engine.close()


async def test_a_long_queue_shows_a_place_when_it_moves_by_a_tenth(bundles) -> None:
    sampler = SteppedSampler("a")
    engine = make_engine({"a": sampler}, max_batch=1)
    await engine.load(bundles["a"])
    engine.submit(request("running"))
    await until(lambda: len(sampler.batches) == 1)
    tickets = [engine.submit(request(str(i))) for i in range(30)]
    seen: list[int] = []

    async def watch() -> None:
        async for place in tickets[-1].places():
            seen.append(place)

    watcher = asyncio.create_task(watch())
    for batches in range(2, 31):
        await asyncio.sleep(0.01)  # the watcher sees each place
        sampler.step()
        await until(lambda: len(sampler.batches) == batches)  # noqa: B023 - awaited before the next iteration
    await asyncio.sleep(0.01)
    sampler.step()
    sampler.step()
    await asyncio.wait_for(watcher, 5)
    # 30 places, each one up from the last: shown when it moved by a tenth of the last shown (3 from 30, 2 from
    # 27), then at every step below 20.
    assert seen == [30, 27, 25, 23, 21, 19, *range(18, 0, -1)]
    await engine.close()


async def test_a_batcher_that_dies_fails_what_waits_and_restarts(bundles) -> None:
    sampler = StandInSampler("a", hold=True)
    engine = make_engine({"a": sampler}, max_batch=2)
    await engine.load(bundles["a"])
    dying = engine.submit(request("abort"))  # a BaseException escapes the batch and ends the batcher task
    await until(sampler.started.is_set)
    waiting = [engine.submit(request(str(i))) for i in range(3)]
    sampler.gate.set()
    for ticket in (dying, *waiting):
        with pytest.raises(GenerationFailedError, match="batcher died"):
            await ticket.result()
    assert engine.stats.batcher_restarts == 1
    assert (await engine.generate(request("after"))).sample.text == "a:after"  # a new batcher serves
    await engine.close()


async def test_a_wedged_batch_times_out_and_a_fresh_thread_takes_over(bundles) -> None:
    stuck, fine = StandInSampler("a", hold=True), StandInSampler("b")
    engine = make_engine({"a": stuck, "b": fine}, batch_timeout=0.3)
    await engine.load(bundles["a"])
    wedged = engine.submit(request("x"))
    with pytest.raises(GenerationFailedError, match="longer than"):
        await wedged.result()
    await engine.load(bundles["b"])  # the new worker thread is free, though the old one is still stuck
    assert (await engine.generate(request("y"))).sample.text == "b:y"
    stuck.gate.set()  # let the abandoned thread end
    await engine.close()
    assert engine.stats.failed_batches == 1


async def test_close_serves_the_queue_while_time_allows(bundles) -> None:
    engine = make_engine({"a": StandInSampler("a", delay=0.05)}, max_batch=2)
    await engine.load(bundles["a"])
    await engine.generate(request("warm"))  # the engine learns how long a batch takes
    tickets = [engine.submit(request(str(i))) for i in range(6)]
    await engine.close(grace=5)
    assert [(await t.result()).sample.text for t in tickets] == [f"a:{i}" for i in range(6)]
    assert not engine.abandoned


async def test_close_fails_what_cannot_finish_at_once_and_abandons_a_batch_past_its_grace(bundles) -> None:
    sampler = StandInSampler("a", hold=True)
    engine = make_engine({"a": sampler})
    await engine.load(bundles["a"])
    running = engine.submit(request("x"))
    await until(sampler.started.is_set)
    queued = engine.submit(request("y"))
    started = time.monotonic()
    await engine.close(grace=0.2)
    assert time.monotonic() - started < 2 and engine.abandoned
    for ticket in (running, queued):
        with pytest.raises(EngineClosedError):
            await ticket.result()
    sampler.gate.set()


async def test_a_load_queued_behind_a_wedged_batch_runs_on_the_fresh_thread(bundles) -> None:
    # The wedged thread's executor cancels what waits behind the batch; a load there never started, so it
    # moves to the new thread instead of failing with a CancelledError nobody asked for.
    stuck, fine = StandInSampler("a", hold=True), StandInSampler("b")
    engine = make_engine({"a": stuck, "b": fine}, batch_timeout=0.3)
    await engine.load(bundles["a"])
    wedged = engine.submit(request("x"))
    await until(stuck.started.is_set)
    loading = asyncio.create_task(engine.load(bundles["b"]))  # queued behind the wedged batch
    with pytest.raises(GenerationFailedError, match="longer than"):
        await wedged.result()
    assert (await asyncio.wait_for(loading, 5)).bundle_hash == "b"
    assert (await engine.generate(request("y"))).sample.text == "b:y"
    # The given-up thread still runs at close: the process must not wait for it at exit.
    await engine.close(grace=1)
    assert engine.abandoned
    stuck.gate.set()


class ThreadNoting(StandInSampler):
    """Notes the thread that writes its batches."""

    def generate_many(self, requests: list[SampleRequest]) -> list:
        self.thread = threading.current_thread()
        return super().generate_many(requests)


async def test_a_given_up_thread_that_ended_is_not_abandoned(bundles) -> None:
    stuck = ThreadNoting("a", hold=True)
    engine = make_engine({"a": stuck}, batch_timeout=0.3)
    await engine.load(bundles["a"])
    with pytest.raises(GenerationFailedError):
        await engine.generate(request("x"))
    stuck.gate.set()  # the wedged batch returns at last: its thread ends
    await until(lambda: not stuck.thread.is_alive())
    await engine.close(grace=1)
    assert not engine.abandoned
