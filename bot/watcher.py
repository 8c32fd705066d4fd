"""Keeps a process that does not train (LYRICS_TRAINER=0) on the model the trainer process promoted.

Only the trainer trains and swaps models (its `bot.promotion.Promoter` moves the new bundle onto LYRICS_MODEL with
os.replace). The other processes share that file (one machine, or a shared folder) and watch it:

    watcher = BundleWatcher(engine, Path("models/lyrics.pt"), interval=2.0)
    watcher.start()          # looks every `interval` seconds, in a task of its own
    await watcher.stop()

A look costs one stat(). When the file's size, time or inode changed, it is hashed in a thread; a hash that
differs from the live bundle's is loaded with `Engine.load`, in the engine's worker thread, and swapped in
only once it has loaded: songs keep being written by the old model until then. A file that changes while it
is hashed is being written (a copy, not an atomic rename): it is looked at again next time. A file that does
not load (torn, half-copied, not a bundle) is logged once and left alone until it changes again; the old
model keeps serving. A file this process may not read (another user's, mode 0600) is logged once per version
(size, time, inode) and looked at again each time, since a chmod that fixes it changes none of these. Nothing a
file can do stops the watcher, and neither does a load the engine gives up on (its worker thread replaced):
the next look tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path

from bot.engine import Engine, EngineClosedError, ModelMissingError
from model.checkpoint import BundleError

log = logging.getLogger(__name__)

Signature = tuple[int, int, int]  # (inode, size, mtime in ns): changes with any write or rename


def signature(path: Path) -> Signature | None:
    """What a stat() says of the file, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def stable_sha256(path: Path, before: Signature) -> str | None:
    """The file's sha256, or None if it changed while it was read (someone is still writing it)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest() if signature(path) == before else None


def _signature_or_none(path: Path) -> Signature | None:
    try:
        return signature(path)
    except OSError:
        return None


class BundleWatcher:
    """Loads the bundle at `path` into `engine` whenever the file holds a new one (see the module docstring)."""

    def __init__(self, engine: Engine, path: Path, *, interval: float) -> None:
        self.engine = engine
        self.path = path
        self.interval = interval
        self.swaps = 0  # new models this watcher put live
        self._seen: Signature | None = None  # the first look hashes the file and compares it with the live model
        self._refused: str | None = None  # the hash of a file that did not load: not tried again
        self._unreadable: tuple[Signature | None, str] | None = None  # the file version and error last logged
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bundle-watcher")

    async def stop(self) -> None:
        """Stop looking; a load under way is abandoned (the old model, or the new one, stays live)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        task = asyncio.current_task()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except EngineClosedError:
                return  # shutting down
            except asyncio.CancelledError:
                if task is not None and task.cancelling():
                    raise  # stop() asked
                # Not asked for: something under the look was cancelled (a load the engine abandoned). A
                # failure like any other, or this process would never reload a model again.
                self._seen = None
                log.error(
                    "looking for a new model at %s was cancelled; looking again in %.1fs", self.path, self.interval
                )
            except Exception:  # a bug here must not stop the watching: the next look tries again
                log.exception("looking for a new model at %s failed", self.path)

    async def check(self) -> bool:
        """Look at the file once; load it if it holds a new bundle. Returns whether a new model went live.

        A file that cannot be read (OSError) is logged once per version of it, and tried again next time.
        """
        try:
            return await self._check()
        except OSError as exc:
            version = (await asyncio.to_thread(_signature_or_none, self.path), f"{type(exc).__name__}: {exc}")
            if version != self._unreadable:
                self._unreadable = version
                log.error("cannot read %s (%s); the live model keeps serving", self.path, version[1])
            return False

    async def _check(self) -> bool:
        now = await asyncio.to_thread(signature, self.path)
        if now is None or now == self._seen:
            return False
        digest = await asyncio.to_thread(stable_sha256, self.path, now)
        if digest is None:
            log.info("%s is changing; looking again in %.1fs", self.path, self.interval)
            return False
        self._seen = now
        self._unreadable = None
        live = self.engine.info
        if (live is not None and live.bundle_hash == digest) or digest == self._refused:
            return False
        started = time.monotonic()
        try:
            info = await self.engine.load(self.path)
        except ModelMissingError:  # removed between the look and the load
            self._seen = None
            return False
        except BundleError as exc:
            self._refused = digest
            log.error("%s changed but does not load (%s); the live model keeps serving", self.path, exc)
            return False
        except BaseException:  # not loaded (cancelled, a bug): the next look tries this version again
            self._seen = None
            raise
        self.swaps += 1
        log.info(
            "a new model reached this process: bundle %s, loaded in %.1fs",
            info.bundle_hash[:12],
            time.monotonic() - started,
        )
        return True
