"""bot/watcher.py: a process that does not train follows the model file the trainer promotes.

Most tests give the engine stand-in samplers (its `loader` seam) named after the sha256 of the file they were
"loaded" from, so that a test can hold a load or a batch; the last ones load real bundles.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from pathlib import Path

import pytest

from bot.engine import Engine
from bot.watcher import BundleWatcher, signature, stable_sha256
from model.checkpoint import BUNDLE_FORMAT, BundleError, atomic_save, safe_load
from model.sample import SampleRequest
from tests.bot.helpers import StandInSampler


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(path: Path, data: bytes) -> None:
    """What the trainer's promote does: write beside the file, then os.replace onto it."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


class Loader:
    """Loads "bundles": files whose bytes name the sampler; b"torn..." files fail as a half-written bundle would.
    A test can hold a load half way (`hold`) and count the loads."""

    def __init__(self) -> None:
        self.loads = 0
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.samplers: list[StandInSampler] = []

    def __call__(self, path: Path, device: str) -> StandInSampler:
        data = path.read_bytes()
        self.loads += 1
        self.started.set()
        assert self.gate.wait(10), "the test never released the load"
        if data.startswith(b"torn"):
            raise BundleError(f"{path}: not a readable model file, truncated or corrupt")
        if data.startswith(b"crash"):
            raise RuntimeError("a bug in the loader")
        sampler = StandInSampler(hashlib.sha256(data).hexdigest(), hold=data.startswith(b"slow"))
        self.samplers.append(sampler)
        return sampler

    def hold(self) -> None:
        self.started.clear()
        self.gate.clear()


@pytest.fixture
async def setup(tmp_path: Path):
    path = tmp_path / "lyrics.pt"
    publish(path, b"model A")
    loader = Loader()
    engine = Engine(loader=loader, torch_threads=1, gather_seconds=0)
    await engine.load(path)
    watcher = BundleWatcher(engine, path, interval=0.05)
    try:
        yield engine, watcher, loader, path
    finally:
        await watcher.stop()
        loader.gate.set()
        await engine.close(grace=1)


async def test_a_new_bundle_goes_live_and_an_unchanged_file_is_not_reloaded(setup) -> None:
    engine, watcher, loader, path = setup
    assert await watcher.check() is False  # the first look: the file is the live model
    assert loader.loads == 1
    publish(path, b"model B")
    assert await watcher.check() is True
    assert engine.info.bundle_hash == sha256(path) and loader.loads == 2
    assert await watcher.check() is False and loader.loads == 2  # nothing changed: one stat(), no hashing
    os.utime(path)  # touched, same bytes: hashed again, but the same hash is not loaded again
    assert await watcher.check() is False and loader.loads == 2
    assert watcher.swaps == 1


async def test_the_old_model_serves_until_the_new_one_has_loaded(setup) -> None:
    engine, watcher, loader, path = setup
    publish(path, b"slow model B")  # its songs wait at the sampler's gate
    await watcher.check()
    old = engine.info.bundle_hash
    slow = loader.samplers[-1]
    song = asyncio.ensure_future(engine.generate(SampleRequest(seed="old", length=5)))
    await asyncio.to_thread(slow.started.wait, 5)  # a batch is being written by model B

    loader.hold()
    publish(path, b"model C")
    check = asyncio.create_task(watcher.check())
    await asyncio.sleep(0.2)
    assert not loader.started.is_set()  # the load waits for the batch: one worker thread runs the model
    slow.gate.set()
    assert (await song).model.bundle_hash == old  # the song in flight was finished by the old model
    await asyncio.to_thread(loader.started.wait, 5)
    assert engine.info.bundle_hash == old  # loading: the old model is still the live one
    loader.gate.set()
    assert await check is True
    assert engine.info.bundle_hash == sha256(path)
    assert (await engine.generate(SampleRequest(seed="new", length=5))).model.bundle_hash == sha256(path)


async def test_a_bundle_that_does_not_load_is_left_alone_until_the_file_changes(setup, caplog) -> None:
    engine, watcher, loader, path = setup
    live = engine.info.bundle_hash
    publish(path, b"torn bundle, half copied")
    with caplog.at_level(logging.ERROR, logger="bot.watcher"):
        assert await watcher.check() is False
    assert engine.info.bundle_hash == live  # the old model keeps serving
    assert "does not load" in caplog.text and "the live model keeps serving" in caplog.text
    loads = loader.loads
    os.utime(path)
    assert await watcher.check() is False and loader.loads == loads  # the same bad bytes are not tried again
    publish(path, b"model B, copied in full")
    assert await watcher.check() is True and engine.info.bundle_hash == sha256(path)


async def test_a_file_that_changes_while_it_is_hashed_is_looked_at_again(tmp_path: Path) -> None:
    path = tmp_path / "lyrics.pt"
    path.write_bytes(b"first half")
    before = signature(path)
    with path.open("ab") as handle:  # a copy still being written
        handle.write(b" and the second half")
    assert stable_sha256(path, before) is None
    assert stable_sha256(path, signature(path)) == sha256(path)
    assert signature(tmp_path / "absent.pt") is None


async def test_the_watcher_survives_anything_a_file_does(setup, caplog) -> None:
    engine, watcher, _, path = setup
    watcher.start()
    with caplog.at_level(logging.ERROR, logger="bot.watcher"):
        publish(path, b"crash the loader")
        await asyncio.sleep(0.3)
        path.unlink()  # gone for a while
        await asyncio.sleep(0.2)
        publish(path, b"torn")
        await asyncio.sleep(0.2)
        publish(path, b"model D")
        for _ in range(100):
            if engine.info.bundle_hash == sha256(path):
                break
            await asyncio.sleep(0.05)
    assert engine.info.bundle_hash == sha256(path)
    assert "a bug in the loader" in caplog.text  # logged, and the watcher went on


# ---- real bundles


def variant(source: Path, folder: Path, bpc: float) -> bytes:
    """The bytes of a real bundle that differs from `source` (its metrics), so it has another hash."""
    bundle = safe_load(source, BUNDLE_FORMAT)
    bundle["metrics"] = {**bundle["metrics"], "bpc": bpc}
    out = folder / f"variant-{bpc}.pt"
    atomic_save(bundle, out)
    return out.read_bytes()


async def test_real_bundles_and_a_truncated_one(tiny_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "models" / "lyrics.pt"
    path.parent.mkdir()
    publish(path, tiny_bundle.read_bytes())
    engine = Engine(device="cpu", torch_threads=1)
    try:
        await engine.load(path)
        watcher = BundleWatcher(engine, path, interval=1.0)
        assert await watcher.check() is False
        newer = variant(tiny_bundle, tmp_path, bpc=1.234)
        path.write_bytes(newer[: len(newer) // 2])  # a careless copy caught half way
        assert await watcher.check() is False
        assert engine.info.bundle_hash == hashlib.sha256(tiny_bundle.read_bytes()).hexdigest()
        publish(path, newer)
        assert await watcher.check() is True
        assert engine.info.bundle_hash == hashlib.sha256(newer).hexdigest()
        assert engine.info.metrics["bpc"] == 1.234
        song = await engine.generate(SampleRequest(seed="窗外", length=5))
        assert song.model.bundle_hash == hashlib.sha256(newer).hexdigest()
    finally:
        await engine.close(grace=5)


async def test_a_file_it_cannot_read_is_logged_once_per_version_not_at_every_look(setup, caplog) -> None:
    engine, watcher, loader, path = setup
    live = engine.info.bundle_hash
    path.unlink()
    path.mkdir()  # open() fails with an OSError, even for root (a mode-0600 file of another user does too)
    with caplog.at_level(logging.ERROR, logger="bot.watcher"):
        watcher.start()
        await asyncio.sleep(0.5)  # ten looks
        assert [r.getMessage() for r in caplog.records].count(
            f"cannot read {path} (IsADirectoryError: [Errno 21] Is a directory: '{path}'); the live model keeps serving"
        ) == 1
        assert not any(r.exc_info for r in caplog.records)  # one line, no traceback
        (path / "inside").write_bytes(b"x")  # a new version of the folder: said again, once
        await asyncio.sleep(0.3)
        assert sum("cannot read" in r.getMessage() for r in caplog.records) == 2
    assert engine.info.bundle_hash == live
    (path / "inside").unlink()
    path.rmdir()
    publish(path, b"model B")  # readable again: loaded at the next look
    for _ in range(100):
        if engine.info.bundle_hash == sha256(path):
            break
        await asyncio.sleep(0.05)
    assert engine.info.bundle_hash == sha256(path) and loader.loads == 2


class CancelledUnderneath(Engine):
    """An engine whose next load is cancelled from below the watcher, as the engine's executor once cancelled
    a load queued behind a wedged batch: a cancellation the watcher did not ask for."""

    cancel_next = False

    async def load(self, path):
        if self.cancel_next:
            self.cancel_next = False
            cancelled = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            return await cancelled
        return await super().load(path)


async def test_a_cancellation_the_watcher_did_not_ask_for_is_a_failure_and_it_goes_on(tmp_path, caplog) -> None:
    path = tmp_path / "lyrics.pt"
    publish(path, b"model A")
    engine = CancelledUnderneath(loader=Loader(), torch_threads=1, gather_seconds=0)
    await engine.load(path)
    watcher = BundleWatcher(engine, path, interval=0.05)
    try:
        engine.cancel_next = True
        with caplog.at_level(logging.ERROR, logger="bot.watcher"):
            watcher.start()
            publish(path, b"model B")
            for _ in range(100):
                if engine.info.bundle_hash == sha256(path):
                    break
                await asyncio.sleep(0.05)
        assert engine.info.bundle_hash == sha256(path)  # the same file, tried again at the next look
        assert "was cancelled" in caplog.text and not engine.cancel_next
    finally:
        await watcher.stop()  # a cancellation it asks for still stops it
        assert watcher._task is None
        await engine.close(grace=1)
