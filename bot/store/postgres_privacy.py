"""forget-me on PostgreSQL: the one transaction that forgets a member, the queue of song messages left to delete,
and the per-member lock that keeps a member's own clicks from committing in the middle of their forget.

A mixin of `PostgresStore` (bot/store/postgres.py), which provides `_read(work)` and `_write(work)`; the table
`forget_deletions` is its migration 5.

Why a lock per member: under READ COMMITTED each statement of the forget sees what had committed when it
started, so a vote or save of the member's that commits between the forget's DELETE and its COMMIT would
outlive the forget. The forget takes the member's advisory lock exclusively; their toggles, saves and new
songs take it shared (before any row lock, so the order is always the same), and so commit wholly before the
forget starts deleting or run wholly after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import asyncpg

from bot.store.base import (
    FORGOTTEN_FOR,
    DeletionProgress,
    ForgetReport,
    MemberForgottenError,
    NewSong,
    PendingDeletion,
    check_aware,
    forget_counts_sql,
)

T = TypeVar("T")

MEMBER_LOCK = 0x6C797200  # the first key of pg_advisory_xact_lock(int, int) for a member ("lyr"); the second: theirs
_LOW_31_BITS = 0x7FFFFFFF  # a snowflake's low bits (increment, worker, milliseconds) spread members over int4


async def lock_member(conn: asyncpg.Connection, user_id: int, *, shared: bool) -> None:
    """Take the member's lock until the end of the transaction: shared for their clicks, exclusive for forget-me.

    Two members whose ids share the low 31 bits share a lock: they only wait for each other a moment more.
    """
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(f"SELECT {function}($1, $2)", MEMBER_LOCK, user_id & _LOW_31_BITS)


async def check_not_forgotten(conn: asyncpg.Connection, song: NewSong) -> None:
    """Inside add_song's transaction, under the member's lock: refuse a song asked for before their forget-me."""
    if song.author_id is None or song.asked_at is None:
        return
    if await conn.fetchval(
        "SELECT 1 FROM forgotten_members WHERE user_id = $1 AND forgotten_at >= $2",
        song.author_id,
        check_aware(song.asked_at),
    ):
        raise MemberForgottenError(f"user {song.author_id} used forget-me after asking for this song")


class PostgresPrivacy:
    """forget_preview, forget_user and the deletion queue, for `PostgresStore` (its `_read` and `_write`)."""

    clock: Callable[[], datetime]
    _read: Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]]
    _write: Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]]

    async def forget_preview(self, user_id: int) -> ForgetReport:
        return await self._read(lambda conn: _forget_counts(conn, user_id))

    async def forget_user(self, user_id: int) -> ForgetReport:
        """PostgreSQL has no secure_delete: the rows are gone for every query at COMMIT, and their bytes are
        reclaimed by (auto)vacuum; the server's WAL and backups keep them until they rotate (docs/bot.md)."""

        async def forget(conn: asyncpg.Connection) -> ForgetReport:
            await lock_member(conn, user_id, shared=False)
            # The member's songs next, in id order: a vote click on one of them waits for us (or we for it)
            # instead of the two locking each other's rows in opposite orders.
            await conn.execute("SELECT id FROM songs WHERE author_id = $1 ORDER BY id FOR UPDATE", user_id)
            counts = await _forget_counts(conn, user_id)
            voted = await conn.fetch(
                "SELECT v.song_id FROM votes v JOIN songs s ON s.id = v.song_id"
                " WHERE v.user_id = $1 AND s.author_id IS DISTINCT FROM $1 ORDER BY v.song_id",
                user_id,
            )
            queued = await conn.execute(
                "INSERT INTO forget_deletions (user_id, channel_id, message_id, song_id, written_at)"
                " SELECT author_id, channel_id, message_id, id, created_at FROM songs WHERE author_id = $1 ORDER BY id",
                user_id,
            )
            now = check_aware(self.clock())
            await conn.execute("DELETE FROM forgotten_members WHERE forgotten_at < $1", now - FORGOTTEN_FOR)
            await conn.execute(
                "INSERT INTO forgotten_members VALUES ($1, $2)"
                " ON CONFLICT (user_id) DO UPDATE SET forgotten_at = EXCLUDED.forgotten_at",
                user_id,
                now,
            )
            await conn.execute("DELETE FROM votes WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM favourites WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM songs WHERE author_id = $1", user_id)  # cascades to votes, favourites
            return ForgetReport(
                counts.votes,
                counts.favourites,
                counts.songs,
                counts.votes_on_songs,
                counts.saves_of_songs,
                messages=int(queued.rsplit(" ", 1)[-1]),
                voted_songs=tuple(row["song_id"] for row in voted),
            )

        return await self._write(forget)

    async def pending_deletions(self, *, limit: int = 100) -> list[PendingDeletion]:
        async def select(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT id, user_id, channel_id, message_id, song_id, written_at FROM forget_deletions"
                " WHERE state = 'pending' ORDER BY id LIMIT $1",
                limit,
            )

        return [PendingDeletion(**dict(row)) for row in await self._read(select)]

    async def settle_deletion(self, deletion_id: int, *, deleted: bool) -> None:
        async def settle(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE forget_deletions SET state = $1 WHERE id = $2",
                "deleted" if deleted else "unreachable",
                deletion_id,
            )

        await self._write(settle)

    async def deletion_progress(self, user_id: int) -> DeletionProgress:
        async def count(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT state, COUNT(*) AS n FROM forget_deletions WHERE user_id = $1 GROUP BY state", user_id
            )

        counts = {row["state"]: row["n"] for row in await self._read(count)}
        return DeletionProgress(counts.get("pending", 0), counts.get("deleted", 0), counts.get("unreachable", 0))

    async def settled_forgets(self) -> list[int]:
        async def select(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(
                "SELECT user_id FROM forget_deletions GROUP BY user_id"
                " HAVING COUNT(*) FILTER (WHERE state = 'pending') = 0 ORDER BY MIN(id)"
            )

        return [row["user_id"] for row in await self._read(select)]

    async def clear_deletions(self, user_id: int) -> None:
        async def clear(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM forget_deletions WHERE user_id = $1 AND state <> 'pending'", user_id)

        await self._write(clear)


async def _forget_counts(conn: asyncpg.Connection, user_id: int) -> ForgetReport:
    return ForgetReport(*await conn.fetchrow(forget_counts_sql("$1"), user_id))
