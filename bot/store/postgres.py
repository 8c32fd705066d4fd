"""The PostgreSQL store (`LYRICS_DATABASE_URL=postgresql://…`): the one database the bot's shard processes share,
on one machine or several.

asyncpg, with a pool of connections in each process. Every write is one transaction; a transaction that
loses a deadlock or a serialization race to another process is run again from the start. The guarantees
are SQLite's (see bot/store/base.py), kept by PostgreSQL's own means:

  * migrations: the version is the one row of `schema_version`; each migration runs in one transaction
    with its version bump, under an advisory lock, so shard processes starting together migrate once;
  * votes: a toggle locks the song's row (FOR NO KEY UPDATE) before it reads or changes the song's votes,
    so toggles of one song, from any process, run one after the other and each counts exactly;
  * song ids: an identity column; a sequence never hands out a number twice, rolled back or deleted;
  * forget-me: one transaction, which first takes the member's advisory lock (exclusive) and then locks the
    member's songs (in id order, as toggles lock them); the member's own toggles, saves and new songs take
    that lock shared first, so none of them commits half-way through their forget (postgres_privacy.py).

    store = await PostgresStore.open("postgresql://bot:secret@db.internal/lyrics")
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Self, TypeVar

import asyncpg
import yarl

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
from bot.store.postgres_coordination import FAILURES, PostgresCoordinator
from bot.store.postgres_privacy import PostgresPrivacy, check_not_forgotten, lock_member
from model.errors import first_line

log = logging.getLogger(__name__)

T = TypeVar("T")

POOL_MIN, POOL_MAX = 1, 10  # connections per process; the database must allow POOL_MAX per process (+1, trainer)
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 15.0  # a statement running longer fails (DatabaseError) instead of holding a click forever
ATTEMPTS = 5  # tries of a transaction that lost a deadlock or serialization race
MIGRATION_LOCK = 0x6C797269_63730001  # pg_advisory_xact_lock key ("lyrics" + 1): one migrator at a time
_RETRY = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_FAILURES = FAILURES  # what a failing server or connection raises; the store turns them into DatabaseError

# -----------------------------------------------------------------------------
# schema: migration N (MIGRATIONS[N-1]) takes schema_version from N-1 to N, and means what SQLite's
# migration N means (bot/store/sqlite.py), in PostgreSQL's words. Append only.

MIGRATIONS: list[tuple[str, ...]] = [
    # v1: the three tables. Foreign keys are DEFERRABLE (checked at once unless a transaction defers them)
    # so that a test can make a COMMIT fail; the bot never defers them.
    (
        """CREATE TABLE songs (
            id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            guild_id    BIGINT           NOT NULL,
            channel_id  BIGINT           NOT NULL,
            author_id   BIGINT,
            seed        TEXT             NOT NULL,
            temperature DOUBLE PRECISION NOT NULL,
            length      INTEGER          NOT NULL,
            random_seed BIGINT           NOT NULL,
            text        TEXT             NOT NULL,
            message_id  BIGINT,
            created_at  TIMESTAMPTZ      NOT NULL
        )""",
        """CREATE TABLE votes (
            song_id    BIGINT      NOT NULL REFERENCES songs(id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
            user_id    BIGINT      NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (song_id, user_id)
        )""",
        # `id` orders saves made in the same microsecond, as SQLite's rowid does.
        """CREATE TABLE favourites (
            id         BIGINT      GENERATED ALWAYS AS IDENTITY,
            user_id    BIGINT      NOT NULL,
            song_id    BIGINT      NOT NULL REFERENCES songs(id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (user_id, song_id)
        )""",
    ),
    # v2: which model bundle wrote each song, and the indexes of the lookups.
    (
        "ALTER TABLE songs ADD COLUMN bundle_hash TEXT",
        "CREATE INDEX songs_by_guild_time ON songs(guild_id, created_at)",
        "CREATE INDEX songs_by_author ON songs(author_id)",
        "CREATE INDEX votes_by_user ON votes(user_id)",
        "CREATE INDEX favourites_by_user_time ON favourites(user_id, created_at)",
        "CREATE INDEX favourites_by_song ON favourites(song_id)",
    ),
    # v3: interactions a shard process leaves for the trainer process (bot/relay.py).
    (
        """CREATE TABLE relayed_interactions (
            id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            payload    TEXT        NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )""",
    ),
    # v4: the rhyme each song was asked to use, so 🎲 and a replay write it the same way.
    ("ALTER TABLE songs ADD COLUMN rhyme TEXT NOT NULL DEFAULT 'auto'",),
    # v5: song messages forget-me still has to delete on Discord, written in the forget's own transaction.
    (
        """CREATE TABLE forget_deletions (
            id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id     BIGINT      NOT NULL,
            channel_id  BIGINT      NOT NULL,
            message_id  BIGINT,
            song_id     BIGINT      NOT NULL,
            written_at  TIMESTAMPTZ NOT NULL,
            state       TEXT        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'deleted', 'unreachable'))
        )""",
        "CREATE INDEX forget_deletions_by_user ON forget_deletions(user_id, state)",
        "CREATE TABLE forgotten_members (user_id BIGINT PRIMARY KEY, forgotten_at TIMESTAMPTZ NOT NULL)",
    ),
    # v6 (2026-12): handed-over interactions hold tokens: UNLOGGED keeps them out of the WAL, replicas and
    # archives; one the trainer found too old is marked expired for its sender. The trainer's claim becomes a
    # lease (bot/store/postgres_coordination.py) instead of an advisory lock on an idle connection.
    (
        "ALTER TABLE relayed_interactions SET UNLOGGED",
        "ALTER TABLE relayed_interactions ADD COLUMN expired BOOLEAN NOT NULL DEFAULT false",
        """CREATE TABLE trainer_lease (
            id         INTEGER     PRIMARY KEY CHECK (id = 1),
            holder     TEXT        NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        )""",
    ),
]
LATEST_VERSION = len(MIGRATIONS)


SECRET_PARAMETERS = frozenset({"password", "sslpassword"})  # libpq takes these in the query string too


def redact(url: str) -> str:
    """The URL without its passwords (in user:password@ or ?password=...), for logs and messages."""
    try:
        parsed = yarl.URL(url)
    except ValueError:
        return "(an unparseable URL)"
    if parsed.password:
        parsed = parsed.with_password("***")
    if any(key.lower() in SECRET_PARAMETERS for key in parsed.query):
        parsed = parsed.with_query(
            [(key, "***" if key.lower() in SECRET_PARAMETERS else value) for key, value in parsed.query.items()]
        )
    return str(parsed)


def _song(row: asyncpg.Record) -> Song:
    return Song(**dict(row))


def _rows(status: str) -> int:
    """The row count of a command status such as "DELETE 3" or "INSERT 0 1"."""
    return int(status.rsplit(" ", 1)[-1])


# -----------------------------------------------------------------------------
# opening a database safely


async def _inspect(conn: asyncpg.Connection, where: str) -> None:
    """Refuse a too-new database, or one that is somebody else's, before anything writes to it (reads only).

    Under the migration lock (shared): another process's migration is never seen half done, e.g. its tables
    already there but not yet its schema_version.
    """
    async with conn.transaction(readonly=True):
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", MIGRATION_LOCK)
        tables = [
            row["table_name"]
            for row in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                " ORDER BY table_name"
            )
        ]
        if "schema_version" in tables:
            version = await conn.fetchval("SELECT version FROM schema_version")
            if version is None:
                raise CorruptDatabaseError(f"{where}: schema_version has no row; left untouched")
            check_schema_version(version, LATEST_VERSION, where)
        elif tables:
            raise CorruptDatabaseError(
                f"{where} has tables ({', '.join(tables[:5])}) but no schema_version: it is not the lyrics bot's"
                " database. It was left untouched; point LYRICS_DATABASE_URL at an empty database (or the bot's own)"
            )


async def _migrate(conn: asyncpg.Connection, where: str) -> None:
    """Apply the missing migrations, each in its own transaction with its version bump."""
    while True:
        async with conn.transaction():
            # Transactional DDL: a migration that fails leaves nothing behind. The lock makes a second
            # process that starts at the same moment wait, then find the work done.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row), version INTEGER NOT NULL)"
            )
            version = await conn.fetchval("SELECT version FROM schema_version")
            if version is None:
                version = 0
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            check_schema_version(version, LATEST_VERSION, where)
            if version == LATEST_VERSION:
                return
            try:
                for statement in MIGRATIONS[version]:
                    await conn.execute(statement)
            except asyncpg.PostgresError as e:
                e.add_note(f"while migrating {where} from schema version {version} to {version + 1}")
                raise
            await conn.execute("UPDATE schema_version SET version = $1", version + 1)
            log.info("migrated %s to schema version %d", where, version + 1)


# -----------------------------------------------------------------------------
# the store


class PostgresStore(PostgresPrivacy, Store):
    """All the bot's persistent state in a PostgreSQL database. Create with `await PostgresStore.open(url)`."""

    def __init__(self, pool: asyncpg.Pool, url: str, clock: Callable[[], datetime]) -> None:
        self._pool = pool
        self._url = url
        self._closed = False
        self._coordinator = PostgresCoordinator(write=self._write, connect=self._connect)
        self.clock = clock  # tests swap it to write songs and votes "in the past"

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        min_size: int = POOL_MIN,
        max_size: int = POOL_MAX,
    ) -> Self:
        """Connect to the database at `url` and bring its schema up to date.

        Raises DatabaseError (unreachable, refused), CorruptDatabaseError (not the bot's) or
        SchemaTooNewError, having written nothing.
        """
        where = redact(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        except (*_FAILURES, ValueError) as exc:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {where} ({first_line(exc)}): check LYRICS_DATABASE_URL"
                " and that the server is running"
            ) from exc
        try:
            async with pool.acquire() as conn:
                await _inspect(conn, where)
                await _migrate(conn, where)
        except _FAILURES as exc:  # e.g. no right to create tables: one line for the person who starts the bot
            pool.terminate()
            notes = "; ".join(getattr(exc, "__notes__", ()))
            raise DatabaseError(f"{where}: {first_line(exc)}" + (f" ({notes})" if notes else "")) from exc
        except BaseException:
            pool.terminate()
            raise
        log.info("opened %s (schema version %d)", where, LATEST_VERSION)
        return cls(pool, url, clock)

    @property
    def description(self) -> str:
        return f"PostgreSQL {redact(self._url)}"

    @property
    def coordinator(self) -> PostgresCoordinator:
        return self._coordinator

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._coordinator.close()
        try:
            await self._pool.close()
        except BaseException:  # cancelled by the shutdown deadline: drop the connections instead
            self._pool.terminate()
            raise

    async def _connect(self, application_name: str) -> asyncpg.Connection:
        """A connection of its own, outside the pool (LISTEN, the trainer's lease), named for pg_stat_activity."""
        try:
            return await asyncpg.connect(
                self._url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": application_name}
            )
        except _FAILURES as exc:
            raise DatabaseError(f"PostgreSQL failed: {first_line(exc)}") from exc

    # ---- running statements

    async def _write(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work(conn)` in one transaction; run again from the start if it lost a deadlock or a serialization
        race (the database rolled it back). Server and connection failures become DatabaseError."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except _RETRY as exc:
                if attempt == ATTEMPTS:
                    raise DatabaseError(f"gave up after {ATTEMPTS} tries: {first_line(exc)}") from exc
                log.info("a transaction lost a race with another one (%s); trying again", type(exc).__name__)
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
            except _FAILURES as exc:
                raise DatabaseError(f"PostgreSQL failed: {first_line(exc)}") from exc
        raise AssertionError("unreachable")

    async def _read(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn:
                return await work(conn)
        except _FAILURES as exc:
            raise DatabaseError(f"PostgreSQL failed: {first_line(exc)}") from exc

    # ---- songs

    async def add_song(self, song: NewSong) -> int:
        async def insert(conn: asyncpg.Connection) -> int:
            if song.author_id is not None:
                await lock_member(conn, song.author_id, shared=True)
                await check_not_forgotten(conn, song)
            return await conn.fetchval(
                "INSERT INTO songs (guild_id, channel_id, author_id, seed, temperature, length,"
                " random_seed, bundle_hash, text, created_at, rhyme)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " RETURNING id",
                song.guild_id,
                song.channel_id,
                song.author_id,
                song.seed,
                song.temperature,
                song.length,
                song.random_seed,
                song.bundle_hash,
                song.text,
                check_aware(self.clock()),
                song.rhyme,
            )

        return await self._write(insert)

    async def set_message_id(self, song_id: int, message_id: int) -> None:
        async def update(conn: asyncpg.Connection) -> int:
            return _rows(await conn.execute("UPDATE songs SET message_id = $1 WHERE id = $2", message_id, song_id))

        if await self._write(update) == 0:
            raise SongNotFoundError(song_id)

    async def get_song(self, song_id: int, *, guild_id: int | None = None) -> Song | None:
        async def select(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                f"SELECT {SONG_COLUMNS}, {SONG_VOTES} AS votes FROM songs s WHERE s.id = $1", song_id
            )

        row = await self._read(select)
        if row is None or (guild_id is not None and row["guild_id"] != guild_id):
            return None
        return _song(row)

    async def delete_song(self, song_id: int) -> bool:
        async def delete(conn: asyncpg.Connection) -> int:
            return _rows(await conn.execute("DELETE FROM songs WHERE id = $1", song_id))

        return await self._write(delete) > 0

    # ---- votes

    async def toggle_vote(self, song_id: int, user_id: int) -> VoteResult:
        async def toggle(conn: asyncpg.Connection) -> VoteResult:
            # The song's row lock orders every toggle of this song, whichever process runs it: the delete
            # below sees the vote a toggle before it committed, and the count is this toggle's own.
            # NO KEY UPDATE: it does not block other members inserting votes or saves (their foreign key
            # checks take KEY SHARE). The voter's lock first: forget-me takes it before any row lock too.
            await lock_member(conn, user_id, shared=True)
            author = await conn.fetchrow("SELECT author_id FROM songs WHERE id = $1 FOR NO KEY UPDATE", song_id)
            if author is None:
                raise SongNotFoundError(song_id)
            if author["author_id"] == user_id:
                raise SelfVoteError(f"user {user_id} asked for song {song_id}")
            deleted = _rows(
                await conn.execute("DELETE FROM votes WHERE song_id = $1 AND user_id = $2", song_id, user_id)
            )
            if not deleted:
                await conn.execute(
                    "INSERT INTO votes (song_id, user_id, created_at) VALUES ($1, $2, $3)",
                    song_id,
                    user_id,
                    check_aware(self.clock()),
                )
            count = await conn.fetchval("SELECT COUNT(*) FROM votes WHERE song_id = $1", song_id)
            return VoteResult(voted=not deleted, count=count)

        return await self._write(toggle)

    async def top_songs(
        self,
        guild_id: int,
        *,
        since: datetime | None = None,
        limit: int = 10,
        channel_ids: Collection[int] | None = None,
    ) -> list[Song]:
        since = check_aware(since) if since is not None else None
        channels = sorted(channel_ids) if channel_ids is not None else None

        async def select(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(
                f"SELECT {SONG_COLUMNS}, COUNT(*) AS votes FROM songs s JOIN votes v ON v.song_id = s.id"
                " WHERE s.guild_id = $1 AND ($2::timestamptz IS NULL OR s.created_at >= $2)"
                " AND ($3::bigint[] IS NULL OR s.channel_id = ANY($3::bigint[]))"
                " GROUP BY s.id ORDER BY votes DESC, s.created_at DESC, s.id DESC LIMIT $4",
                guild_id,
                since,
                channels,
                limit,
            )

        return [_song(row) for row in await self._read(select)]

    # ---- favourites

    async def add_favourite(self, user_id: int, song_id: int) -> bool:
        async def insert(conn: asyncpg.Connection) -> bool:
            # KEY SHARE: the song cannot be deleted between this check and the insert.
            await lock_member(conn, user_id, shared=True)
            if await conn.fetchval("SELECT 1 FROM songs WHERE id = $1 FOR KEY SHARE", song_id) is None:
                raise SongNotFoundError(song_id)
            status = await conn.execute(
                "INSERT INTO favourites (user_id, song_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                user_id,
                song_id,
                check_aware(self.clock()),
            )
            return _rows(status) > 0

        return await self._write(insert)

    async def remove_favourite(self, user_id: int, song_id: int) -> bool:
        async def delete(conn: asyncpg.Connection) -> int:
            return _rows(
                await conn.execute("DELETE FROM favourites WHERE user_id = $1 AND song_id = $2", user_id, song_id)
            )

        return await self._write(delete) > 0

    async def list_favourites(self, user_id: int, *, limit: int = 10, offset: int = 0) -> list[Song]:
        async def select(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(
                f"SELECT {SONG_COLUMNS}, {SONG_VOTES} AS votes"
                " FROM favourites f JOIN songs s ON s.id = f.song_id"
                " WHERE f.user_id = $1 ORDER BY f.created_at DESC, f.id DESC LIMIT $2 OFFSET $3",
                user_id,
                limit,
                offset,
            )

        return [_song(row) for row in await self._read(select)]

    async def count_favourites(self, user_id: int) -> int:
        async def count(conn: asyncpg.Connection) -> int:
            return await conn.fetchval("SELECT COUNT(*) FROM favourites WHERE user_id = $1", user_id)

        return await self._read(count)
