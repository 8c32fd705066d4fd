"""The bot's memory: songs it wrote, members' votes and saved favourites. One interface, two databases.

    store = await open_store("data/lyrics.db")                      # SQLite, the embedded default
    store = await open_store("postgresql://bot@db.internal/lyrics")  # PostgreSQL, shared by shard processes
    song_id = await store.add_song(NewSong(...))
    result = await store.toggle_vote(song_id, user_id)
    await store.close()

    base.py          the `Store` interface, its records and errors, and the guarantees both backends keep
    coordination.py  `Coordinator`: how the processes on one database work together (`store.coordinator`)
    sqlite.py        `SqliteStore`: aiosqlite on one file (LYRICS_DB)
    postgres.py      `PostgresStore`: asyncpg on a PostgreSQL database (LYRICS_DATABASE_URL)
    sqlite_privacy.py, postgres_privacy.py            each store's forget-me
    sqlite_coordination.py, postgres_coordination.py  each database's trainer claim and handed-over interactions

Each backend is written in its own database's SQL with its own driver (both well kept), rather than through
a layer over both such as SQLAlchemy Core: the guarantees are kept by each database's own means anyway
(SQLite's BEGIN IMMEDIATE, user_version, secure_delete and quick_check; PostgreSQL's row locks, identity
columns, advisory locks and NOTIFY), the SQL of the two differs in most statements (parameters, times, id
generation, arrays), and the SQLite path, which most bots run, keeps its code and speed (SQLAlchemy's async
layer over aiosqlite measured 2 to 4 times slower per vote toggle). One test suite holds both to the same
behaviour (tests/bot/store/test_contract.py). Each of them raises only StoreError's kinds (a failing database:
DatabaseError), never its driver's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from os import PathLike

from bot.store.base import (
    DM_GUILD_ID,
    CorruptDatabaseError,
    DatabaseError,
    DeletionProgress,
    ForgetReport,
    MemberForgottenError,
    NewSong,
    PendingDeletion,
    SchemaTooNewError,
    SelfVoteError,
    Song,
    SongNotFoundError,
    Store,
    StoreError,
    TrainerTakenError,
    VoteResult,
    utcnow,
)
from bot.store.coordination import Coordinator, RelayFate

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = [
    "DM_GUILD_ID",
    "POSTGRES_SCHEMES",
    "Coordinator",
    "CorruptDatabaseError",
    "DatabaseError",
    "DeletionProgress",
    "ForgetReport",
    "MemberForgottenError",
    "NewSong",
    "PendingDeletion",
    "RelayFate",
    "SchemaTooNewError",
    "SelfVoteError",
    "Song",
    "SongNotFoundError",
    "Store",
    "StoreError",
    "TrainerTakenError",
    "VoteResult",
    "open_store",
    "utcnow",
]


async def open_store(target: str | PathLike[str], *, clock: Callable[[], datetime] = utcnow) -> Store:
    """Open the store at `target`: a postgresql:// URL, else a SQLite file (or ":memory:").

    The schema is brought up to date. Raises StoreError subclasses a person can act on (a damaged or
    newer database, an unreachable server), having changed nothing.
    """
    if isinstance(target, str) and target.startswith(POSTGRES_SCHEMES):
        # Imported here: a bot on SQLite never loads asyncpg.
        from bot.store.postgres import PostgresStore

        return await PostgresStore.open(target, clock=clock)
    from bot.store.sqlite import SqliteStore

    return await SqliteStore.open(target, clock=clock)
