"""forget-me on SQLite: the one transaction that forgets a member, and the queue of song messages left to delete.

A mixin of `SqliteStore` (bot/store/sqlite.py), which provides `_read()`, `_write()` and the connection lock;
the table `forget_deletions` is its migration 5. The guarantees are base.py's: the forget and the record of
every message still to delete commit together, so a crash or restart right after it loses none of them.
"""

from __future__ import annotations

from datetime import datetime

import aiosqlite

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


class SqlitePrivacy:
    """forget_preview, forget_user and the deletion queue, for `SqliteStore` (its `_read()` and `_write()`)."""

    async def forget_preview(self, user_id: int) -> ForgetReport:
        async with self._read() as db:
            return await _forget_counts(db, user_id)

    async def forget_user(self, user_id: int) -> ForgetReport:
        """After the one transaction, a checkpoint moves the change out of the -wal file, so that with
        secure_delete no deleted text stays in either file."""
        async with self._write() as db:
            counts = await _forget_counts(db, user_id)
            voted = await db.execute_fetchall(
                "SELECT v.song_id FROM votes v JOIN songs s ON s.id = v.song_id"
                " WHERE v.user_id = :u AND s.author_id IS NOT :u ORDER BY v.song_id",
                {"u": user_id},
            )
            queued = await db.execute(
                "INSERT INTO forget_deletions (user_id, channel_id, message_id, song_id, written_at)"
                " SELECT author_id, channel_id, message_id, id, created_at FROM songs WHERE author_id = ? ORDER BY id",
                (user_id,),
            )
            now = self.clock()
            await db.execute("DELETE FROM forgotten_members WHERE forgotten_at < ?", (_ts(now - FORGOTTEN_FOR),))
            await db.execute("INSERT OR REPLACE INTO forgotten_members VALUES (?, ?)", (user_id, _ts(now)))
            await db.execute("DELETE FROM votes WHERE user_id = ?", (user_id,))
            await db.execute("DELETE FROM favourites WHERE user_id = ?", (user_id,))
            await db.execute("DELETE FROM songs WHERE author_id = ?", (user_id,))  # cascades to votes, favourites
        async with self._read() as db:
            # TRUNCATE: the -wal file is emptied too. Busy (a reader elsewhere) only postpones it to the next one.
            await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return ForgetReport(
            counts.votes,
            counts.favourites,
            counts.songs,
            counts.votes_on_songs,
            counts.saves_of_songs,
            messages=queued.rowcount,
            voted_songs=tuple(row[0] for row in voted),
        )

    async def pending_deletions(self, *, limit: int = 100) -> list[PendingDeletion]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                "SELECT id, user_id, channel_id, message_id, song_id, written_at FROM forget_deletions"
                " WHERE state = 'pending' ORDER BY id LIMIT ?",
                (limit,),
            )
        return [
            PendingDeletion(**{**dict(row), "written_at": datetime.fromisoformat(row["written_at"])}) for row in rows
        ]

    async def settle_deletion(self, deletion_id: int, *, deleted: bool) -> None:
        async with self._write() as db:
            await db.execute(
                "UPDATE forget_deletions SET state = ? WHERE id = ?",
                ("deleted" if deleted else "unreachable", deletion_id),
            )

    async def deletion_progress(self, user_id: int) -> DeletionProgress:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                "SELECT state, COUNT(*) FROM forget_deletions WHERE user_id = ? GROUP BY state", (user_id,)
            )
        counts = {row[0]: row[1] for row in rows}
        return DeletionProgress(counts.get("pending", 0), counts.get("deleted", 0), counts.get("unreachable", 0))

    async def settled_forgets(self) -> list[int]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                "SELECT user_id FROM forget_deletions GROUP BY user_id"
                " HAVING SUM(state = 'pending') = 0 ORDER BY MIN(id)"
            )
        return [row[0] for row in rows]

    async def clear_deletions(self, user_id: int) -> None:
        async with self._write() as db:
            await db.execute("DELETE FROM forget_deletions WHERE user_id = ? AND state != 'pending'", (user_id,))


async def check_not_forgotten(db: aiosqlite.Connection, song: NewSong) -> None:
    """Inside add_song's transaction: refuse a song its member asked for before their forget-me."""
    if song.author_id is None or song.asked_at is None:
        return
    async with db.execute(
        "SELECT 1 FROM forgotten_members WHERE user_id = ? AND forgotten_at >= ?", (song.author_id, _ts(song.asked_at))
    ) as cur:
        if await cur.fetchone() is not None:
            raise MemberForgottenError(f"user {song.author_id} used forget-me after asking for this song")


def _ts(moment: datetime) -> str:
    """sqlite.py's time format (fixed-width ISO 8601 UTC text: string order is time order)."""
    return check_aware(moment).isoformat(timespec="microseconds")


async def _forget_counts(db: aiosqlite.Connection, user_id: int) -> ForgetReport:
    async with db.execute(forget_counts_sql(":u"), {"u": user_id}) as cur:
        row = await cur.fetchone()
    return ForgetReport(*row)
