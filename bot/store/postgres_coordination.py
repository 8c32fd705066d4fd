"""PostgreSQL's `Coordinator` (shard processes on one machine or several): the trainer's claim, and the
interactions handed to the trainer (bot/relay.py). Given out by `PostgresStore.coordinator`, on the store's pool.

The claim is a lease: one row of `trainer_lease` naming its holder and when it expires. The holder renews it
every third of its length, on a connection of its own; a renewal that fails (the connection broke, the server
restarted, a NAT dropped it) or that finds the lease expired or taken means the claim is lost for good in this
process (`wait_trainer_lost` returns; the bot stops relaying and refuses /train). A holder that dies lets the
next trainer in when its lease runs out, never before; one that closes cleanly hands it back at once.

`relayed_interactions` is UNLOGGED: an interaction's token (valid 15 minutes) never reaches the WAL, the
replicas or the archives. Its rows live for seconds; a crash of the server empties the table, which loses
only interactions that were about to be answered "the trainer is not answering" anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from bot.store.base import DatabaseError
from bot.store.coordination import TRAINER_LEASE_S, Coordinator, RelayFate
from model.errors import first_line

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a failing server or connection raises; the store turns them into DatabaseError. (InternalClientError:
# what a connection the server cut can raise on its next query.)
FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)
RELAY_CHANNEL = "lyrics_relay"  # NOTIFY channel: an interaction was left for the trainer process
EXPIRED_KEEP_S = 60.0  # an expired interaction nobody withdrew (its sender crashed) is deleted after this
TRAINER_APPLICATION = "lyrics-trainer"  # application_name of the connection that holds the lease

_CLAIM = """INSERT INTO trainer_lease AS lease (id, holder, expires_at)
    VALUES (1, $1, clock_timestamp() + make_interval(secs => $2))
    ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
        WHERE lease.expires_at < clock_timestamp()
    RETURNING holder"""
_RENEW = """UPDATE trainer_lease SET expires_at = clock_timestamp() + make_interval(secs => $2)
    WHERE id = 1 AND holder = $1 AND expires_at > clock_timestamp()"""
_RELEASE = "DELETE FROM trainer_lease WHERE id = 1 AND holder = $1"


def _rows(status: str) -> int:
    """The row count of a command status such as 'UPDATE 1'."""
    return int(status.rsplit(" ", 1)[-1])


class _Lease:
    """A held trainer lease and the task that renews it."""

    def __init__(self, conn: asyncpg.Connection, holder: str, lease_s: float) -> None:
        self.conn = conn
        self.holder = holder
        self.lease_s = lease_s
        self.lost = asyncio.Event()
        self.reason = ""
        self.task = asyncio.create_task(self._renew(), name="trainer-lease")

    async def _renew(self) -> None:
        every = self.lease_s / 3
        while True:
            await asyncio.sleep(every)
            try:
                renewed = _rows(await self.conn.execute(_RENEW, self.holder, self.lease_s, timeout=every))
            except FAILURES as exc:
                self._lose(f"its database connection failed ({first_line(exc)})")
                return
            if not renewed:
                self._lose("the lease ran out before it was renewed (the process or its database stalled)")
                return

    def _lose(self, why: str) -> None:
        self.reason = f"this process lost its claim to train: {why}"
        log.error("%s; /train is refused here until this process restarts", self.reason)
        self.lost.set()
        self.conn.terminate()

    async def release(self) -> None:
        """Stop renewing; hand the lease back if it is still ours (the next trainer need not wait)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if not self.lost.is_set():
            with contextlib.suppress(*FAILURES):
                await self.conn.execute(_RELEASE, self.holder, timeout=2.0)
        self.conn.terminate()


class PostgresCoordinator(Coordinator):
    """The trainer's lease and the relay table, on the store's database.

    `write(work)` is the store's: `work(conn)` in one transaction, retried after a lost race, its failures
    raised as DatabaseError. `connect(name)` opens a connection of the store's own, outside its pool.
    """

    def __init__(
        self,
        *,
        write: Callable[[Callable[[asyncpg.Connection], Awaitable[Any]]], Awaitable[Any]],
        connect: Callable[[str], Awaitable[asyncpg.Connection]],
    ) -> None:
        self._write = write
        self._connect = connect
        self._listener: asyncpg.Connection | None = None
        self._relayed = asyncio.Event()
        self._lease: _Lease | None = None

    async def close(self) -> None:
        """Hand the lease back and stop listening (the store closes it)."""
        if self._lease is not None:
            await self._lease.release()
        if self._listener is not None:
            self._listener.terminate()  # waits for NOTIFY: nothing to finish

    # ---- the trainer process

    async def claim_trainer(self, *, lease_s: float = TRAINER_LEASE_S) -> bool:
        if self._lease is not None:
            return not self._lease.lost.is_set()
        conn = await self._connect(TRAINER_APPLICATION)
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        try:
            claimed = await conn.fetchval(_CLAIM, holder, lease_s)
        except FAILURES as exc:
            conn.terminate()
            raise DatabaseError(f"PostgreSQL failed: {first_line(exc)}") from exc
        if claimed is None:
            await conn.close()
            return False
        self._lease = _Lease(conn, holder, lease_s)
        log.info("this process holds the trainer lease (%s, %g s, renewed every %g s)", holder, lease_s, lease_s / 3)
        return True

    async def wait_trainer_lost(self) -> str:
        if self._lease is None:
            await asyncio.Event().wait()
        assert self._lease is not None
        await self._lease.lost.wait()
        return self._lease.reason

    # ---- interactions handed to the trainer process (ages by the database's clock: the same for every machine)

    async def relay_post(self, payload: str) -> int:
        async def post(conn: asyncpg.Connection) -> int:
            ticket = await conn.fetchval("INSERT INTO relayed_interactions (payload) VALUES ($1) RETURNING id", payload)
            await conn.execute("SELECT pg_notify($1, '')", RELAY_CHANNEL)  # delivered at COMMIT
            return ticket

        return await self._write(post)

    async def relay_withdraw(self, ticket: int) -> RelayFate:
        async def withdraw(conn: asyncpg.Connection) -> bool | None:
            return await conn.fetchval("DELETE FROM relayed_interactions WHERE id = $1 RETURNING expired", ticket)

        expired = await self._write(withdraw)
        if expired is None:
            return RelayFate.TAKEN
        return RelayFate.EXPIRED if expired else RelayFate.WITHDRAWN

    async def relay_take(self, *, max_age_s: float) -> list[str]:
        async def take(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            cutoff = await conn.fetchval("SELECT clock_timestamp() - make_interval(secs => $1)", max_age_s)
            await conn.execute(
                "DELETE FROM relayed_interactions"
                " WHERE expired AND created_at < $1::timestamptz - make_interval(secs => $2)",
                cutoff,
                EXPIRED_KEEP_S,
            )
            await conn.execute(
                "UPDATE relayed_interactions SET expired = true WHERE NOT expired AND created_at < $1", cutoff
            )
            return await conn.fetch(
                "DELETE FROM relayed_interactions WHERE NOT expired RETURNING id, payload",
            )

        rows = sorted(await self._write(take), key=lambda row: row["id"])
        return [row["payload"] for row in rows]

    async def relay_wait(self, timeout: float) -> None:
        """Wait for a NOTIFY on a connection of its own (LISTEN needs one that stays out of the pool)."""
        if self._listener is None or self._listener.is_closed():
            try:
                self._listener = await self._connect("lyrics-relay-listener")
                await self._listener.add_listener(RELAY_CHANNEL, self._on_notify)
            except (DatabaseError, *FAILURES) as exc:
                log.warning("cannot LISTEN for relayed interactions (%s); polling instead", first_line(exc))
                self._listener = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._relayed.wait(), timeout)
        self._relayed.clear()

    def _on_notify(self, *_: Any) -> None:
        self._relayed.set()
