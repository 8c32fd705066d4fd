"""What only the PostgreSQL store can show: schema_version and its migrations, refusing a newer or foreign database
untouched, shard processes starting at once, a failed COMMIT, an unreachable server, and forget-me racing votes
from two processes. Each test gets a fresh database on the session's throwaway server (tests/postgres.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random

import asyncpg
import pytest

from bot.store import (
    CorruptDatabaseError,
    DatabaseError,
    RelayFate,
    SchemaTooNewError,
    SelfVoteError,
    SongNotFoundError,
    StoreError,
    VoteResult,
    open_store,
)
from bot.store import postgres as postgres_store
from bot.store.postgres import LATEST_VERSION, MIGRATIONS, PostgresStore, redact
from tests.bot.store.helpers import ALICE, BOB, CAROL, GUILD, T0, Clock, new_song
from tests.postgres import Server

pytestmark = pytest.mark.postgres


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def catalogue(url: str) -> list[tuple[str, str]]:
    """Every table and column of the database: 'nothing was written' means this is unchanged."""
    rows = await fetch(
        url,
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
    )
    return [(row["table_name"], row["column_name"]) for row in rows]


async def version(url: str) -> int:
    [row] = await fetch(url, "SELECT version FROM schema_version")
    return row["version"]


async def test_open_creates_the_schema_once(postgres_url: str) -> None:
    async with await PostgresStore.open(postgres_url):
        assert await version(postgres_url) == LATEST_VERSION
        tables = {name for name, _ in await catalogue(postgres_url)}
        assert tables == {
            "schema_version",
            "songs",
            "votes",
            "favourites",
            "relayed_interactions",
            "forget_deletions",
            "forgotten_members",
            "trainer_lease",
        }
    before = await catalogue(postgres_url)
    async with await PostgresStore.open(postgres_url):
        assert await catalogue(postgres_url) == before and await version(postgres_url) == LATEST_VERSION


@pytest.mark.parametrize("start", range(1, LATEST_VERSION))
async def test_migrates_from_every_earlier_version(postgres_url: str, start: int) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:  # the database exactly as version `start` of the bot left it
        for migration in MIGRATIONS[:start]:
            for statement in migration:
                await conn.execute(statement)
        await conn.execute(
            "CREATE TABLE schema_version (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),"
            " version INTEGER NOT NULL)"
        )
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", start)
        song_id = await conn.fetchval(  # v1 columns only, so the same row is valid at every version
            "INSERT INTO songs (guild_id, channel_id, author_id, seed, temperature, length, random_seed, text,"
            " message_id, created_at) VALUES ($1, 5, $2, '窗外', 0.8, 120, 42, '歌词', 99, $3) RETURNING id",
            GUILD,
            ALICE,
            T0,
        )
        await conn.execute("INSERT INTO votes VALUES ($1, $2, $3)", song_id, BOB, T0)
        await conn.execute(
            "INSERT INTO favourites (user_id, song_id, created_at) VALUES ($1, $2, $3)", CAROL, song_id, T0
        )
    finally:
        await conn.close()

    async with await PostgresStore.open(postgres_url) as store:
        assert await version(postgres_url) == LATEST_VERSION
        song = await store.get_song(song_id)
        assert (song.guild_id, song.author_id, song.text, song.message_id, song.votes) == (GUILD, ALICE, "歌词", 99, 1)
        assert song.created_at == T0 and song.bundle_hash is None
        assert [s.id for s in await store.list_favourites(CAROL)] == [song_id]
        assert (await store.toggle_vote(song_id, CAROL)).count == 2
        assert await store.add_song(new_song()) > song_id
        relay = store.coordinator
        assert await relay.relay_withdraw(await relay.relay_post("{}")) is RelayFate.WITHDRAWN  # v3's table


async def test_failed_migration_rolls_back(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await PostgresStore.open(postgres_url) as store:
        await store.add_song(new_song())
    broken = ("CREATE TABLE half_done (x INTEGER)", "SELECT * FROM no_such_table")
    monkeypatch.setattr(postgres_store, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(postgres_store, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(DatabaseError) as info:
        await PostgresStore.open(postgres_url)
    assert f"to {LATEST_VERSION + 1}" in str(info.value) and "no_such_table" in str(info.value)
    assert isinstance(info.value.__cause__, asyncpg.UndefinedTableError)
    assert await version(postgres_url) == LATEST_VERSION
    assert "half_done" not in {name for name, _ in await catalogue(postgres_url)}
    assert len(await fetch(postgres_url, "SELECT id FROM songs")) == 1


async def test_refuses_newer_schema_and_writes_nothing(postgres_url: str) -> None:
    async with await PostgresStore.open(postgres_url):
        pass
    conn = await asyncpg.connect(postgres_url)
    await conn.execute("UPDATE schema_version SET version = $1", LATEST_VERSION + 5)
    await conn.execute("ALTER TABLE songs ADD COLUMN shiny_new_column TEXT")
    await conn.close()
    before = await catalogue(postgres_url)

    with pytest.raises(SchemaTooNewError) as info:
        await PostgresStore.open(postgres_url)
    assert f"version {LATEST_VERSION + 5}" in str(info.value) and str(LATEST_VERSION) in str(info.value)
    assert await catalogue(postgres_url) == before and await version(postgres_url) == LATEST_VERSION + 5


async def test_refuses_somebody_elses_database_untouched(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    await conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount NUMERIC)")
    await conn.close()
    before = await catalogue(postgres_url)

    with pytest.raises(CorruptDatabaseError) as info:
        await open_store(postgres_url)
    assert "invoices" in str(info.value) and "LYRICS_DATABASE_URL" in str(info.value)
    assert await catalogue(postgres_url) == before  # no schema_version, no songs table was added


async def test_shards_starting_together_migrate_once(postgres_server: Server) -> None:
    """Processes opening an empty database at the same moment: one migrates, the others wait and find it done
    (none mistakes the half-migrated database for somebody else's)."""
    for _ in range(3):
        async with postgres_server.database() as url:
            stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(5)))
            try:
                assert await version(url) == LATEST_VERSION
                song_id = await stores[0].add_song(new_song())
                assert (await stores[4].toggle_vote(song_id, BOB)).count == 1
            finally:
                await asyncio.gather(*(store.close() for store in stores))


async def test_a_failed_commit_rolls_back(postgres_url: str) -> None:
    """A COMMIT that fails (a deferred foreign key: a vote for no song) undoes the whole transaction, and the
    connection goes back to the pool clean."""
    async with await PostgresStore.open(postgres_url, max_size=1) as store:  # one connection: it must be reused
        song = await store.add_song(new_song())

        async def bad_then_good(conn: asyncpg.Connection) -> None:
            await conn.execute("SET CONSTRAINTS ALL DEFERRED")  # checked at COMMIT, not at the INSERT
            await conn.execute("INSERT INTO votes (song_id, user_id, created_at) VALUES (9999, $1, now())", BOB)
            await conn.execute("INSERT INTO votes (song_id, user_id, created_at) VALUES ($1, $2, now())", song, CAROL)

        with pytest.raises(DatabaseError) as info:
            await store._write(bad_then_good)
        assert isinstance(info.value.__cause__, asyncpg.ForeignKeyViolationError)
        assert (await store.get_song(song)).votes == 0  # the good row of the failed transaction is gone too
        assert await store.toggle_vote(song, BOB) == VoteResult(voted=True, count=1)  # the next write works


async def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseError) as info:
        await open_store("postgresql://bot:hunter2@127.0.0.1:1/lyrics")
    message = str(info.value)
    assert "hunter2" not in message and "127.0.0.1:1" in message and "LYRICS_DATABASE_URL" in message
    assert isinstance(info.value, StoreError)
    assert redact("postgresql://bot:hunter2@db/lyrics") == "postgresql://bot:***@db/lyrics"


def test_redact_hides_a_password_given_as_a_parameter() -> None:
    # libpq reads ?password= (and sslpassword=) as well as user:password@; both reach the logs through redact.
    for url in (
        "postgresql://bot@db/lyrics?password=hunter2",
        "postgresql://bot@db/lyrics?sslmode=require&password=hunter2",
        "postgresql://bot@db/lyrics?PASSWORD=hunter2&sslpassword=hunter2&sslmode=require",
        "postgresql://bot:hunter2@db/lyrics?password=hunter2",
    ):
        shown = redact(url)
        assert "hunter2" not in shown and "***" in shown and "db/lyrics" in shown, shown
    assert "sslmode=require" in redact("postgresql://bot@db/lyrics?sslmode=require&password=hunter2")


async def test_forget_me_racing_votes_from_two_processes(postgres_url: str) -> None:
    """Alice forgets herself while two shards toggle votes on her songs and Bob's, Alice among the voters:
    nothing deadlocks or fails, and once the dust settles she is forgotten completely."""
    clock = Clock()
    async with (
        await PostgresStore.open(postgres_url, clock=clock) as a,
        await PostgresStore.open(postgres_url, clock=clock) as b,
    ):
        hers = [await a.add_song(new_song(author=ALICE)) for _ in range(5)]
        his = [await a.add_song(new_song(author=BOB)) for _ in range(5)]
        for song in his:
            await a.toggle_vote(song, ALICE)
            await a.add_favourite(ALICE, song)
        voters = [CAROL, BOB, ALICE, 7_000_000_000_000_000_001]
        rng = random.Random(5)

        async def click(n: int) -> None:
            store, song, voter = (a, b)[n % 2], rng.choice(hers + his), rng.choice(voters)
            with contextlib.suppress(SongNotFoundError, SelfVoteError):  # her song was forgotten, or her own
                await store.toggle_vote(song, voter)

        clicks = [click(n) for n in range(200)]
        await asyncio.gather(*clicks[:100], b.forget_user(ALICE), *clicks[100:])
        await a.forget_user(ALICE)  # her votes cast after the first forget-me
        assert [await a.get_song(song) for song in hers] == [None] * len(hers)
        assert await a.forget_preview(ALICE) == await b.forget_preview(ALICE)
        assert (await a.forget_preview(ALICE)).votes == 0 and await a.count_favourites(ALICE) == 0


async def waiting_on_locks(url: str) -> int:
    """How many of the database's sessions are waiting for a lock now."""
    [row] = await fetch(url, "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    return row["n"]


async def test_forget_me_and_the_members_own_clicks_serialise(postgres_url: str) -> None:
    """Alice's vote and save are in flight (held up on Bob's song, which an admin's session has locked) when she
    confirms forget-me. Her forget must wait for them and then delete them: without her lock, it deletes what
    had committed and returns, and her vote and save commit after it, under her id."""
    clock = Clock()
    async with await PostgresStore.open(postgres_url, clock=clock) as store:
        his = await store.add_song(new_song(author=BOB))
        await store.add_song(new_song(author=ALICE))
        admin = await asyncpg.connect(postgres_url)
        try:
            holding = admin.transaction()
            await holding.start()
            await admin.execute("SELECT 1 FROM songs WHERE id = $1 FOR UPDATE", his)  # her clicks wait on this
            vote = asyncio.create_task(store.toggle_vote(his, ALICE))
            save = asyncio.create_task(store.add_favourite(ALICE, his))
            for _ in range(200):
                if await waiting_on_locks(postgres_url) >= 2:
                    break
                await asyncio.sleep(0.02)
            forget = asyncio.create_task(store.forget_user(ALICE))
            for _ in range(100):  # it waits for her clicks (or, unfixed, finishes at once)
                if forget.done() or await waiting_on_locks(postgres_url) >= 3:
                    break
                await asyncio.sleep(0.02)
            await holding.rollback()
        finally:
            await admin.close()
        assert await vote == VoteResult(voted=True, count=1) and await save
        await forget
        assert (await store.get_song(his)).votes == 0  # her vote went with her
        assert await store.count_favourites(ALICE) == 0
        assert (await store.forget_preview(ALICE)).votes == 0


async def test_the_store_reconnects_after_the_server_drops_its_connections(postgres_url: str) -> None:
    """A database restart (here: every connection of the bot's cut by an admin) costs at most the operations in
    flight, as DatabaseError; the next ones get new connections."""
    async with await PostgresStore.open(postgres_url, max_size=2) as store:
        song = await store.add_song(new_song())
        await store.coordinator.relay_wait(0.05)  # the LISTEN connection exists now
        admin = await asyncpg.connect(postgres_url)
        try:
            cut = await admin.fetchval(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert cut >= 2
        results = []
        for _ in range(3):  # at most the pool's connections fail once each
            try:
                results.append(await store.toggle_vote(song, BOB))
            except DatabaseError:
                results.append(None)
        assert results[-1] is not None and results.count(None) <= 2
        ticket = await store.coordinator.relay_post("{}")
        await store.coordinator.relay_wait(0.05)  # listens again on a new connection
        assert await store.coordinator.relay_withdraw(ticket) is RelayFate.WITHDRAWN


# ---- the relay table and the trainer's lease


async def test_the_relay_table_is_unlogged(postgres_url: str) -> None:
    """Interaction tokens stay out of the WAL, and so out of replicas and archives."""
    async with await PostgresStore.open(postgres_url):
        [row] = await fetch(
            postgres_url, "SELECT relpersistence::text FROM pg_class WHERE relname = 'relayed_interactions'"
        )
    assert row["relpersistence"] == "u"


async def kill_trainer_connection(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'lyrics-trainer'"
        )
    finally:
        await conn.close()


async def test_a_trainer_whose_connection_is_cut_loses_its_lease_and_the_next_waits_for_it(postgres_url: str) -> None:
    lease = 1.5  # renewed every 0.5 s
    async with await PostgresStore.open(postgres_url) as first, await PostgresStore.open(postgres_url) as second:
        assert await first.coordinator.claim_trainer(lease_s=lease)
        lost = asyncio.create_task(first.coordinator.wait_trainer_lost())
        await asyncio.sleep(lease * 1.5)  # renewed meanwhile: still held, still refused to another
        assert not lost.done() and not await second.coordinator.claim_trainer(lease_s=lease)

        assert await kill_trainer_connection(postgres_url) == 1  # a server restart, an idle timeout, a NAT drop
        cut = asyncio.get_running_loop().time()
        reason = await asyncio.wait_for(lost, lease)
        assert "lost its claim to train" in reason and "connection failed" in reason
        assert not await first.coordinator.claim_trainer(lease_s=lease)  # lost for good in this process
        assert not await second.coordinator.claim_trainer(lease_s=lease)  # the lease has not run out yet
        while not await second.coordinator.claim_trainer(lease_s=lease):
            assert asyncio.get_running_loop().time() - cut < lease + 2, "the dead holder's lease never expired"
            await asyncio.sleep(0.1)
        assert asyncio.get_running_loop().time() - cut > lease / 3  # not before the last renewal ran out
