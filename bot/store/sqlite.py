"""The SQLite store: songs, votes and favourites in one file, the embedded default (`LYRICS_DB`).

One long-lived aiosqlite connection per process. Every write is one explicit transaction
(BEGIN IMMEDIATE ... COMMIT), so a method either happens completely or not at all, and an
awaited write that returned is in the WAL file (see _configure for what that survives).
Several processes on one machine may share the file (BEGIN IMMEDIATE serialises their writers);
shards on several machines share PostgreSQL instead (bot/store/postgres.py).

    store = await SqliteStore.open("data/bot.db")   # creates the folder, migrates the schema
    song_id = await store.add_song(NewSong(...))
    result = await store.toggle_vote(song_id, user_id)
    await store.close()                             # or: async with await SqliteStore.open(p) as store

Times are stored as fixed-width ISO 8601 UTC text, so the file stays readable in the sqlite3 shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Self

import aiosqlite

from bot.store.base import (
    SONG_COLUMNS,
    SONG_VOTES,
    CorruptDatabaseError,
    DatabaseError,
    NewSong,
    SelfVoteError,
    Song,
    SongNotFoundError,
    Store,
    VoteResult,
    check_aware,
    check_schema_version,
    utcnow,
)
from bot.store.sqlite_coordination import SqliteCoordinator
from bot.store.sqlite_privacy import SqlitePrivacy, check_not_forgotten
from model.errors import first_line

# -----------------------------------------------------------------------------
# schema: migration N (MIGRATIONS[N-1]) takes PRAGMA user_version from N-1 to N.
# Append only; never edit a migration that has shipped, files in the wild already ran it.
# Statements are kept apart (not one script) because sqlite3's executescript() commits
# first, which would break the one-transaction-per-migration rule.

MIGRATIONS: list[tuple[str, ...]] = [
    # v1: the three tables.
    (
        # AUTOINCREMENT so an id is never reused: old messages' vote buttons carry the song
        # id, and a click on a deleted song's button must not land on a newer song.
        # Deleted songs are deleted rows (votes/favourites cascade), not a flag: the bot has
        # no use for a song it may not show, and a forgotten text should really be gone.
        """CREATE TABLE songs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id    INTEGER NOT NULL,
            channel_id  INTEGER NOT NULL,
            author_id   INTEGER,
            seed        TEXT    NOT NULL,
            temperature REAL    NOT NULL,
            length      INTEGER NOT NULL,
            random_seed INTEGER NOT NULL,
            text        TEXT    NOT NULL,
            message_id  INTEGER,
            created_at  TEXT    NOT NULL
        )""",
        """CREATE TABLE votes (
            song_id    INTEGER NOT NULL REFERENCES songs(id) ON DELETE CASCADE,
            user_id    INTEGER NOT NULL,
            created_at TEXT    NOT NULL,
            PRIMARY KEY (song_id, user_id)
        )""",
        """CREATE TABLE favourites (
            user_id    INTEGER NOT NULL,
            song_id    INTEGER NOT NULL REFERENCES songs(id) ON DELETE CASCADE,
            created_at TEXT    NOT NULL,
            PRIMARY KEY (user_id, song_id)
        )""",
    ),
    # v2: record which model bundle wrote each song (NULL for v1 songs), and index the
    # lookups that were full scans: leaderboard by guild and period, forget-me by user,
    # favourites newest first, and the cascade from songs to favourites.
    (
        "ALTER TABLE songs ADD COLUMN bundle_hash TEXT",
        "CREATE INDEX songs_by_guild_time ON songs(guild_id, created_at)",
        "CREATE INDEX songs_by_author ON songs(author_id)",
        "CREATE INDEX votes_by_user ON votes(user_id)",
        "CREATE INDEX favourites_by_user_time ON favourites(user_id, created_at)",
        "CREATE INDEX favourites_by_song ON favourites(song_id)",
    ),
    # v3: interactions a shard process leaves for the trainer process (bot/relay.py), taken within seconds.
    (
        """CREATE TABLE relayed_interactions (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            payload    TEXT    NOT NULL,
            created_at TEXT    NOT NULL
        )""",
    ),
    # v4: the rhyme each song was asked to use, so 🎲 and a replay write it the same way.
    ("ALTER TABLE songs ADD COLUMN rhyme TEXT NOT NULL DEFAULT 'auto'",),
    # v5: song messages forget-me still has to delete on Discord, written in the forget's own transaction so
    # that a crash or restart never loses one (bot/forgetting.py drains them). A member's rows go once they
    # were told the outcome. message_id NULL: never recorded; the drainer looks for it by song id.
    (
        """CREATE TABLE forget_deletions (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id     INTEGER NOT NULL,
            channel_id  INTEGER NOT NULL,
            message_id  INTEGER,
            song_id     INTEGER NOT NULL,
            written_at  TEXT    NOT NULL,
            state       TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'deleted', 'unreachable'))
        )""",
        "CREATE INDEX forget_deletions_by_user ON forget_deletions(user_id, state)",
        # ...and members forgotten within FORGOTTEN_FOR: a song they asked for before that is not stored.
        "CREATE TABLE forgotten_members (user_id INTEGER PRIMARY KEY, forgotten_at TEXT NOT NULL)",
    ),
    # v6 (2026-12): a handed-over interaction the trainer found too old is marked expired for its sender.
    ("ALTER TABLE relayed_interactions ADD COLUMN expired INTEGER NOT NULL DEFAULT 0",),
]
LATEST_VERSION = len(MIGRATIONS)


# -----------------------------------------------------------------------------
# time: stored as fixed-width ISO 8601 UTC text ('2024-05-01T12:00:00.000000+00:00'), so
# string order is time order (the period filter compares strings) and the file stays
# readable in the sqlite3 shell.


def _ts(moment: datetime) -> str:
    return check_aware(moment).isoformat(timespec="microseconds")


def _song(row: sqlite3.Row) -> Song:
    return Song(**{**dict(row), "created_at": datetime.fromisoformat(row["created_at"])})


# -----------------------------------------------------------------------------
# errors: what sqlite3 raises becomes DatabaseError (base.py), as asyncpg's errors do on PostgreSQL


@contextmanager
def _as_store_errors() -> Iterator[None]:
    """Around every statement the store runs: a failing database (locked past busy_timeout, a full disk, an
    I/O error, a failed constraint) raises DatabaseError, with sqlite3's error as its cause."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DatabaseError(f"SQLite failed: {first_line(exc)}") from exc


def _unusable(path: str, exc: sqlite3.Error) -> DatabaseError:
    """Opening failed for a reason that is not the file's contents (those are CorruptDatabaseError)."""
    notes = "; ".join(getattr(exc, "__notes__", ()))
    return DatabaseError(
        f"{path} ({first_line(exc)}{f'; {notes}' if notes else ''}): check that this user can read and write it"
        " and its folder, and that no other program holds it locked"
    )


# -----------------------------------------------------------------------------
# opening a file safely


def _inspect(path: Path) -> None:
    """Refuse a corrupt or too-new file before anything opens it for writing.

    Reads only: with a -wal beside it the file is opened mode=ro (which may add a -shm);
    without one the main file is complete, and immutable=1 reads it without creating the
    -wal/-shm files that a read-only open of a WAL-mode file would otherwise leave behind.
    quick_check reads every page once (well under a second for a bot-sized file) and catches
    damage at start-up rather than in the middle of a vote.
    """
    wal_exists = Path(f"{path}-wal").exists()
    uri = path.resolve().as_uri() + ("?mode=ro" if wal_exists else "?immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            check_schema_version(version, LATEST_VERSION, path)
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        raise  # locked, unreadable, no permission...: not a verdict on the contents
    except sqlite3.DatabaseError as e:  # "file is not a database", "malformed"
        raise CorruptDatabaseError(f"{path} is not a usable SQLite database ({e}); left untouched") from e
    if problems != ["ok"]:
        raise CorruptDatabaseError(f"{path} failed quick_check ({'; '.join(problems[:3])}); left untouched")


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        return (await cur.fetchone())[0]


@asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error (cancellation and a failed COMMIT included).

    IMMEDIATE takes the write lock up front, so read-then-write (count after toggle, version
    check before migrating) cannot interleave with another connection's writer; a second
    process waits on busy_timeout instead of failing with SQLITE_BUSY half-way through.
    A COMMIT can fail too (a deferred constraint, a full disk, an I/O error) and then leaves the
    transaction open: it is rolled back, so the connection is never left inside a transaction
    (where every later BEGIN would fail).
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        await db.execute("COMMIT")
    except BaseException:
        # No transaction may be left to roll back (e.g. cancelled after COMMIT ran).
        with contextlib.suppress(sqlite3.OperationalError):
            await db.execute("ROLLBACK")
        raise


async def _configure(db: aiosqlite.Connection, path: str) -> None:
    await db.execute("PRAGMA busy_timeout = 5000")  # another process (a backup, the shell) may hold the lock
    await db.execute("PRAGMA foreign_keys = ON")  # per connection; the cascades need it
    # Per connection too: deleted rows are overwritten with zeros, so a forgotten song's text does not
    # linger in free pages of the file (forget_user then checkpoints it out of the -wal file as well).
    await db.execute("PRAGMA secure_delete = ON")
    # Check again read-write before the first write below (the WAL switch rewrites the
    # header): the file may have changed since _inspect. A DatabaseError here means it is
    # no database at all.
    try:
        check_schema_version(await _user_version(db), LATEST_VERSION, path)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as e:
        raise CorruptDatabaseError(f"{path} is not a usable SQLite database ({e})") from e
    # WAL: readers don't block the writer, and a commit is one append to the -wal file.
    # synchronous=NORMAL with WAL fsyncs only at checkpoints, not at every commit. A COMMIT
    # that returned has been written to the OS, so it survives the bot crashing or being
    # killed with SIGKILL (an acknowledged vote is never lost that way; the kill -9 test
    # checks it). A power cut or OS crash may lose the last few commits, but never corrupts
    # the file. FULL would close that window at an fsync per vote, too slow for button spam.
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = NORMAL")


async def _migrate(db: aiosqlite.Connection, path: str) -> None:
    """Apply the missing migrations, each in its own transaction with its version bump."""
    while True:
        async with _transaction(db):
            version = await _user_version(db)  # under the write lock: another process may have migrated
            check_schema_version(version, LATEST_VERSION, path)
            if version == LATEST_VERSION:
                return
            try:
                for statement in MIGRATIONS[version]:
                    await db.execute(statement)
            except sqlite3.Error as e:
                e.add_note(f"while migrating {path} from schema version {version} to {version + 1}")
                raise
            await db.execute(f"PRAGMA user_version = {version + 1}")


# -----------------------------------------------------------------------------
# the store


class SqliteStore(SqlitePrivacy, Store):
    """All the bot's persistent state in one SQLite file. Create with `await SqliteStore.open(path)`.

    Every method takes an asyncio lock: one connection sees its own uncommitted writes, so
    without it a read could observe another coroutine's half-done transaction, and two
    coroutines' BEGINs would collide. The lock is FIFO, so clicks are served in order.
    """

    def __init__(self, db: aiosqlite.Connection, path: str, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self._closed = False
        self._coordinator = SqliteCoordinator(path, read=self._read, write=self._write)
        self.path = path
        self.clock = clock  # tests swap it to write songs and votes "in the past"

    @classmethod
    async def open(cls, path: str | PathLike[str], *, clock: Callable[[], datetime] = utcnow) -> Self:
        """Open (or create) the database at `path` and bring its schema up to date.

        Raises CorruptDatabaseError or SchemaTooNewError, having written nothing to the file, or DatabaseError
        (unreadable, locked by another program, a failed migration: rolled back).
        ":memory:" gives a throwaway database (handy in other modules' tests).
        """
        name = str(path)
        try:
            if name != ":memory:":
                file = Path(path)
                file.parent.mkdir(parents=True, exist_ok=True)
                if file.exists():
                    await asyncio.to_thread(_inspect, file)
            # isolation_level=None: sqlite3 starts no transactions behind our back; we do.
            db = await aiosqlite.connect(name, isolation_level=None)
            try:
                db.row_factory = sqlite3.Row
                await _configure(db, name)
                await _migrate(db, name)
            except BaseException:
                await db.close()
                raise
        except sqlite3.Error as exc:
            raise _unusable(name, exc) from exc
        return cls(db, name, clock)

    async def close(self) -> None:
        """`PRAGMA optimize` before closing is SQLite's advice: it refreshes the planner's statistics."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._coordinator.close()
            try:
                with _as_store_errors():
                    await self._db.execute("PRAGMA optimize")
            finally:
                await self._db.close()

    @property
    def description(self) -> str:
        return f"SQLite {self.path}"

    @property
    def coordinator(self) -> SqliteCoordinator:
        return self._coordinator

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            with _as_store_errors():
                yield self._db

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            with _as_store_errors():
                async with _transaction(self._db) as db:
                    yield db

    # ---- songs

    async def add_song(self, song: NewSong) -> int:
        async with self._write() as db:
            await check_not_forgotten(db, song)
            cur = await db.execute(
                "INSERT INTO songs (guild_id, channel_id, author_id, seed, temperature, length,"
                " random_seed, bundle_hash, text, created_at, rhyme) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    song.guild_id,
                    song.channel_id,
                    song.author_id,
                    song.seed,
                    song.temperature,
                    song.length,
                    song.random_seed,
                    song.bundle_hash,
                    song.text,
                    _ts(self.clock()),
                    song.rhyme,
                ),
            )
            return cur.lastrowid

    async def set_message_id(self, song_id: int, message_id: int) -> None:
        async with self._write() as db:
            cur = await db.execute("UPDATE songs SET message_id = ? WHERE id = ?", (message_id, song_id))
            if cur.rowcount == 0:
                raise SongNotFoundError(song_id)

    async def get_song(self, song_id: int, *, guild_id: int | None = None) -> Song | None:
        async with (
            self._read() as db,
            db.execute(f"SELECT {SONG_COLUMNS}, {SONG_VOTES} AS votes FROM songs s WHERE s.id = ?", (song_id,)) as cur,
        ):
            row = await cur.fetchone()
        if row is None or (guild_id is not None and row["guild_id"] != guild_id):
            return None
        return _song(row)

    async def delete_song(self, song_id: int) -> bool:
        async with self._write() as db:
            cur = await db.execute("DELETE FROM songs WHERE id = ?", (song_id,))
            return cur.rowcount > 0

    # ---- votes

    async def toggle_vote(self, song_id: int, user_id: int) -> VoteResult:
        async with self._write() as db:
            async with db.execute("SELECT author_id FROM songs WHERE id = ?", (song_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise SongNotFoundError(song_id)
            if row["author_id"] == user_id:
                raise SelfVoteError(f"user {user_id} asked for song {song_id}")
            cur = await db.execute("DELETE FROM votes WHERE song_id = ? AND user_id = ?", (song_id, user_id))
            voted = cur.rowcount == 0
            if voted:
                await db.execute(
                    "INSERT INTO votes (song_id, user_id, created_at) VALUES (?, ?, ?)",
                    (song_id, user_id, _ts(self.clock())),
                )
            async with db.execute("SELECT COUNT(*) FROM votes WHERE song_id = ?", (song_id,)) as cur:
                (count,) = await cur.fetchone()
        return VoteResult(voted=voted, count=count)

    async def top_songs(
        self,
        guild_id: int,
        *,
        since: datetime | None = None,
        limit: int = 10,
        channel_ids: Collection[int] | None = None,
    ) -> list[Song]:
        since_text = _ts(since) if since is not None else ""  # every timestamp sorts after ""
        where, params = "s.guild_id = ? AND s.created_at >= ?", [guild_id, since_text]
        if channel_ids is not None:
            # json_each keeps it one parameter however many channels a guild has (SQLite caps parameters).
            where += " AND s.channel_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(channel_ids)))
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"SELECT {SONG_COLUMNS}, COUNT(*) AS votes FROM songs s JOIN votes v ON v.song_id = s.id"
                f" WHERE {where} GROUP BY s.id ORDER BY votes DESC, s.created_at DESC, s.id DESC LIMIT ?",
                (*params, limit),
            )
        return [_song(row) for row in rows]

    # ---- favourites

    async def add_favourite(self, user_id: int, song_id: int) -> bool:
        async with self._write() as db:
            async with db.execute("SELECT 1 FROM songs WHERE id = ?", (song_id,)) as cur:
                if await cur.fetchone() is None:
                    raise SongNotFoundError(song_id)
            cur = await db.execute(
                "INSERT OR IGNORE INTO favourites (user_id, song_id, created_at) VALUES (?, ?, ?)",
                (user_id, song_id, _ts(self.clock())),
            )
            return cur.rowcount > 0

    async def remove_favourite(self, user_id: int, song_id: int) -> bool:
        async with self._write() as db:
            cur = await db.execute("DELETE FROM favourites WHERE user_id = ? AND song_id = ?", (user_id, song_id))
            return cur.rowcount > 0

    async def list_favourites(self, user_id: int, *, limit: int = 10, offset: int = 0) -> list[Song]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"SELECT {SONG_COLUMNS}, {SONG_VOTES} AS votes"
                " FROM favourites f JOIN songs s ON s.id = f.song_id"
                " WHERE f.user_id = ? ORDER BY f.created_at DESC, f.rowid DESC LIMIT ? OFFSET ?",
                (user_id, limit, offset),
            )
        return [_song(row) for row in rows]

    async def count_favourites(self, user_id: int) -> int:
        async with (
            self._read() as db,
            db.execute("SELECT COUNT(*) FROM favourites WHERE user_id = ?", (user_id,)) as cur,
        ):
            return (await cur.fetchone())[0]
