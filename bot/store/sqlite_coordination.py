"""SQLite's `Coordinator` (several processes on one machine, one file): the trainer's claim, and the interactions
handed to the trainer (bot/relay.py). Given out by `SqliteStore.coordinator`, on the store's connection.

The claim is an exclusive lock on `<database>.trainer` beside the file: the kernel drops it with the process
that held it, so it cannot be lost while the process lives, nor outlive it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

import aiosqlite

from bot.store.base import check_aware, utcnow
from bot.store.coordination import TRAINER_LEASE_S, Coordinator, RelayFate

RELAY_POLL_S = 0.1  # how often the trainer looks for interactions left by other processes (no NOTIFY in SQLite)
EXPIRED_KEEP_S = 60.0  # an expired interaction nobody withdrew (its sender crashed) is deleted after this

Connect = Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]


def _ts(moment: datetime) -> str:
    return check_aware(moment).isoformat(timespec="microseconds")  # as bot/store/sqlite.py stores times


class SqliteCoordinator(Coordinator):
    """The trainer's lock file and the relay table of the SQLite file at `path`.

    `read` and `write` are the store's: its connection under its lock, plain or in one transaction, with the
    driver's errors turned into DatabaseError.
    """

    def __init__(self, path: str, *, read: Connect, write: Connect) -> None:
        self.path = path
        self._read = read
        self._write = write
        self._trainer_lock: int | None = None  # the file descriptor holding the trainer's claim

    def close(self) -> None:
        """Release the claim (the store closes it)."""
        if self._trainer_lock is not None:
            os.close(self._trainer_lock)
            self._trainer_lock = None

    # ---- the trainer process

    async def claim_trainer(self, *, lease_s: float = TRAINER_LEASE_S) -> bool:
        """An exclusive lock on `<database>.trainer` beside the file (`lease_s` is PostgreSQL's: unused)."""
        if self._trainer_lock is not None or self.path == ":memory:":
            return True
        fd = os.open(f"{self.path}.trainer", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._trainer_lock = fd
        return True

    # ---- interactions handed to the trainer process
    # Stamped with the wall clock, not the store's `clock`: their age decides whether Discord still waits.

    async def relay_post(self, payload: str) -> int:
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO relayed_interactions (payload, created_at) VALUES (?, ?)", (payload, _ts(utcnow()))
            )
            return cur.lastrowid

    async def relay_withdraw(self, ticket: int) -> RelayFate:
        async with self._write() as db:
            rows = await db.execute_fetchall("SELECT expired FROM relayed_interactions WHERE id = ?", (ticket,))
            if not rows:
                return RelayFate.TAKEN
            await db.execute("DELETE FROM relayed_interactions WHERE id = ?", (ticket,))
            return RelayFate.EXPIRED if rows[0]["expired"] else RelayFate.WITHDRAWN

    async def relay_take(self, *, max_age_s: float) -> list[str]:
        # A read first: the trainer polls, and an empty poll must not take the write lock.
        async with (
            self._read() as db,
            db.execute("SELECT 1 FROM relayed_interactions WHERE NOT expired LIMIT 1") as cur,
        ):
            if await cur.fetchone() is None:
                return []
        now = utcnow()
        cutoff = _ts(now - timedelta(seconds=max_age_s))
        async with self._write() as db:
            forgotten = _ts(now - timedelta(seconds=max_age_s + EXPIRED_KEEP_S))
            await db.execute("DELETE FROM relayed_interactions WHERE expired AND created_at < ?", (forgotten,))
            await db.execute(
                "UPDATE relayed_interactions SET expired = 1 WHERE NOT expired AND created_at < ?", (cutoff,)
            )
            rows = await db.execute_fetchall(
                "SELECT id, payload FROM relayed_interactions WHERE NOT expired ORDER BY id"
            )
            if rows:
                await db.execute("DELETE FROM relayed_interactions WHERE NOT expired AND id <= ?", (rows[-1]["id"],))
        return [row["payload"] for row in rows]

    async def relay_wait(self, timeout: float) -> None:
        await asyncio.sleep(min(timeout, RELAY_POLL_S))
