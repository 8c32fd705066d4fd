"""The store's contract, run against both backends: SQLite (a file in tmp_path) and PostgreSQL (a fresh database
on the session's throwaway server; these are marked `postgres`).

What only one backend can show (SQLite's files, PostgreSQL's schema_version) is in test_sqlite.py and
test_postgres.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.store import (
    Coordinator,
    DatabaseError,
    DeletionProgress,
    ForgetReport,
    MemberForgottenError,
    RelayFate,
    SelfVoteError,
    SongNotFoundError,
    Store,
    StoreError,
    VoteResult,
    open_store,
)
from bot.store import postgres as postgres_store
from bot.store import sqlite as sqlite_store
from bot.store.base import FORGOTTEN_FOR
from tests.bot.store.helpers import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    GUILD,
    OTHER_CHANNEL,
    OTHER_GUILD,
    Clock,
    new_song,
)
from tests.postgres import Server

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a store lives: a SQLite file, or the URL of an empty PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "bot.db")
        return
    server: Server = request.getfixturevalue("postgres_server")
    async with server.database() as url:
        yield url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(target: str, clock: Clock) -> AsyncIterator[Store]:
    async with await open_store(target, clock=clock) as s:
        yield s


def is_postgres(target: str) -> bool:
    return target.startswith("postgresql://")


async def raw_execute(target: str, *statements: str) -> None:
    """Statements run beside the store, on a connection of their own (as an admin's shell would)."""
    if is_postgres(target):
        conn = await asyncpg.connect(target)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()
    else:
        with sqlite3.connect(target) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()


async def schema_version(target: str) -> int:
    if is_postgres(target):
        conn = await asyncpg.connect(target)
        try:
            return await conn.fetchval("SELECT version FROM schema_version")
        finally:
            await conn.close()
    with sqlite3.connect(target) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return version


# ---- opening


async def test_both_backends_have_the_same_schema_versions() -> None:
    """Migration N means the same schema in both: a new one is added to both or to neither."""
    assert sqlite_store.LATEST_VERSION == postgres_store.LATEST_VERSION


async def test_open_migrates_to_the_latest_schema_and_reopens(target: str, clock: Clock) -> None:
    async with await open_store(target, clock=clock) as store:
        assert await schema_version(target) == sqlite_store.LATEST_VERSION
        song_id = await store.add_song(new_song())
        await store.set_message_id(song_id, 77)
        await store.toggle_vote(song_id, BOB)
        await store.add_favourite(CAROL, song_id)
        before = await store.get_song(song_id)
        await store.close()  # closing twice is harmless
    async with await open_store(target, clock=clock) as store:
        assert await store.get_song(song_id) == before
        assert before.votes == 1 and before.message_id == 77
        assert [s.id for s in await store.list_favourites(CAROL)] == [song_id]
        assert await store.toggle_vote(song_id, BOB) == VoteResult(voted=False, count=0)


# ---- songs


async def test_add_get_and_message_id(store: Store, clock: Clock) -> None:
    big = 2**63 - 1  # the largest snowflake a signed 64-bit integer holds
    song_id = await store.add_song(new_song(author=big))
    assert await store.get_song(song_id + 1000) is None
    await store.set_message_id(song_id, big - 1)
    song = await store.get_song(song_id)
    assert song is not None
    assert (song.author_id, song.message_id, song.bundle_hash, song.votes) == (big, big - 1, "ab12cd34", 0)
    assert (song.seed, song.temperature, song.length, song.random_seed) == ("窗外", 0.8, 120, 1234)
    assert song.text == "窗外的麻雀 在电线杆上多嘴"
    assert song.rhyme == "auto"
    assert song.created_at == clock.now and song.created_at.tzinfo is not None
    with pytest.raises(SongNotFoundError):
        await store.set_message_id(song_id + 1000, 1)
    rhymed = await store.get_song(await store.add_song(dataclasses.replace(new_song(), rhyme="花")))
    assert rhymed.rhyme == "花"


async def test_get_song_scoped_to_guild_and_dm_channel(store: Store) -> None:
    song_id = await store.add_song(new_song(guild=GUILD))
    assert (await store.get_song(song_id, guild_id=GUILD)) is not None
    assert await store.get_song(song_id, guild_id=OTHER_GUILD) is None
    in_dm = await store.add_song(new_song(guild=0, channel=OTHER_CHANNEL))
    assert await store.visible_song(in_dm, guild_id=None, channel_id=OTHER_CHANNEL) is not None
    assert await store.visible_song(in_dm, guild_id=None, channel_id=CHANNEL) is None  # another member's DM
    assert await store.visible_song(song_id, guild_id=None, channel_id=CHANNEL) is None  # a guild's song


async def test_delete_song_cascades_and_ids_are_not_reused(store: Store) -> None:
    keep = await store.add_song(new_song())
    gone = await store.add_song(new_song())
    await store.toggle_vote(gone, BOB)
    await store.add_favourite(BOB, gone)
    await store.toggle_vote(keep, BOB)
    assert await store.delete_song(gone) is True
    assert await store.delete_song(gone) is False
    assert await store.get_song(gone) is None
    assert await store.count_favourites(BOB) == 0
    assert (await store.get_song(keep)).votes == 1
    # An old message's button still carries `gone`: a new song must not take that id.
    assert await store.add_song(new_song()) > gone
    with pytest.raises(SongNotFoundError):
        await store.toggle_vote(gone, CAROL)


async def test_ids_are_not_reused_after_the_newest_song_is_deleted_and_the_store_reopened(
    target: str, clock: Clock
) -> None:
    """The case a plain INTEGER PRIMARY KEY (max + 1) gets wrong: the newest song deleted, then a restart."""
    async with await open_store(target, clock=clock) as store:
        ids = [await store.add_song(new_song()) for _ in range(3)]
        assert await store.delete_song(ids[-1])
    async with await open_store(target, clock=clock) as store:
        assert await store.add_song(new_song()) > ids[-1]


# ---- votes


async def test_toggle_vote_adds_then_withdraws(store: Store) -> None:
    song_id = await store.add_song(new_song(author=ALICE))
    assert await store.toggle_vote(song_id, BOB) == VoteResult(voted=True, count=1)
    assert await store.toggle_vote(song_id, CAROL) == VoteResult(voted=True, count=2)
    assert await store.toggle_vote(song_id, BOB) == VoteResult(voted=False, count=1)
    assert (await store.get_song(song_id)).votes == 1


async def test_self_vote_refused(store: Store) -> None:
    song_id = await store.add_song(new_song(author=ALICE))
    with pytest.raises(SelfVoteError):
        await store.toggle_vote(song_id, ALICE)
    assert (await store.get_song(song_id)).votes == 0
    with pytest.raises(SongNotFoundError):
        await store.toggle_vote(song_id + 1, BOB)


async def test_a_forgotten_author_may_vote(store: Store) -> None:
    song_id = await store.add_song(new_song(author=None))
    assert await store.toggle_vote(song_id, ALICE) == VoteResult(voted=True, count=1)


async def test_concurrent_toggles_count_exactly(store: Store) -> None:
    song_id = await store.add_song(new_song(author=ALICE))
    users = [3_000_000_000_000_000_000 + i for i in range(20)]
    rng = random.Random(7)
    clicks = [rng.choice(users) for _ in range(100)]

    results = await asyncio.gather(*(store.toggle_vote(song_id, u) for u in clicks))

    final = (await store.get_song(song_id)).votes
    assert final == sum(clicks.count(u) % 2 for u in users)
    assert_walk(clicks, results, final)


def assert_walk(clicks: list[int], results: list[VoteResult], final: int) -> None:
    """Whatever order concurrent toggles ran in: each member's clicks alternated vote, withdraw, vote...; and
    the counts the clicks saw, in the order they committed, go up or down by one from 0 to `final` (no two
    toggles saw the same moment, none was lost)."""
    for user in set(clicks):
        mine = Counter(r.voted for u, r in zip(clicks, results, strict=True) if u == user)
        n = clicks.count(user)
        assert (mine[True], mine[False]) == ((n + 1) // 2, n // 2), user
    # The walk from 0 to `final`: between c and c + 1 the count crosses up once more than down for c below
    # `final`, as often up as down above it, and every step from 0 to the highest count is taken. Two toggles
    # that saw the same moment (a lost update) would cross one edge twice the same way.
    ups = Counter(r.count - 1 for r in results if r.voted)  # c -> c + 1, by c
    downs = Counter(r.count for r in results if not r.voted)  # c + 1 -> c, by c
    edges = set(ups) | set(downs)
    assert edges == set(range(max(edges, default=-1) + 1)), edges
    for c in edges | set(range(final)):
        assert ups[c] - downs[c] == (1 if c < final else 0), (c, ups[c], downs[c])


async def test_two_stores_toggling_the_same_votes_at_once_stay_exact(target: str, clock: Clock) -> None:
    """Two processes (shards) on one database receive the same members' clicks on the same song at the same
    moment: every click toggles once, and the count is exact. (Two connections: SQLite serialises them with
    BEGIN IMMEDIATE, PostgreSQL with the song's row lock.)"""
    async with await open_store(target, clock=clock) as a, await open_store(target, clock=clock) as b:
        song_id = await a.add_song(new_song(author=ALICE))
        users = [4_000_000_000_000_000_000 + i for i in range(10)]
        rng = random.Random(3)
        clicks = [rng.choice(users) for _ in range(120)] + users * 2  # the same member on both shards too
        rng.shuffle(clicks)
        results = await asyncio.gather(*((a if i % 2 else b).toggle_vote(song_id, u) for i, u in enumerate(clicks)))
        final = (await a.get_song(song_id)).votes
        assert final == (await b.get_song(song_id)).votes == sum(clicks.count(u) % 2 for u in users)
        assert_walk(clicks, results, final)


async def test_top_songs_order_period_guild_and_channels(store: Store, clock: Clock) -> None:
    now = datetime.now(UTC)
    clock.now = now - timedelta(days=40)
    ancient = await store.add_song(new_song(text="old hit"))
    clock.now = now - timedelta(days=3)
    one = await store.add_song(new_song(text="one vote"))
    two_old = await store.add_song(new_song(text="two votes, older"))
    two_new = await store.add_song(new_song(text="two votes, newer"))
    hidden = await store.add_song(new_song(text="in another channel", channel=OTHER_CHANNEL))
    await store.add_song(new_song(text="no votes"))
    foreign = await store.add_song(new_song(guild=OTHER_GUILD))
    for song_id, voters in [(ancient, 5), (one, 1), (two_old, 2), (two_new, 2), (hidden, 4), (foreign, 3)]:
        for v in range(voters):
            await store.toggle_vote(song_id, 5_000_000_000_000_000_000 + v)

    week = await store.top_songs(GUILD, since=now - timedelta(days=7), channel_ids={CHANNEL})
    assert [s.id for s in week] == [two_new, two_old, one]  # no zero-vote song, no other guild or channel
    assert [s.votes for s in week] == [2, 2, 1]
    assert (await store.top_songs(GUILD, since=now - timedelta(days=7)))[0].id == hidden  # every channel
    all_time = await store.top_songs(GUILD, since=None, channel_ids=[CHANNEL, OTHER_CHANNEL])
    assert [s.id for s in all_time] == [ancient, hidden, two_new, two_old, one]
    assert [s.id for s in await store.top_songs(GUILD, limit=2)] == [ancient, hidden]
    assert await store.top_songs(GUILD, channel_ids=set()) == []
    assert [s.id for s in await store.top_songs(OTHER_GUILD)] == [foreign]
    with pytest.raises(ValueError):
        await store.top_songs(GUILD, since=datetime(2024, 1, 1))  # naive: ambiguous, refused


# ---- favourites


async def test_save_and_unsave(store: Store) -> None:
    song_id = await store.add_song(new_song())
    assert await store.add_favourite(BOB, song_id) is True
    assert await store.add_favourite(BOB, song_id) is False
    assert await store.count_favourites(BOB) == 1
    assert await store.remove_favourite(BOB, song_id) is True
    assert await store.remove_favourite(BOB, song_id) is False
    assert await store.count_favourites(BOB) == 0
    with pytest.raises(SongNotFoundError):
        await store.add_favourite(BOB, song_id + 1)


async def test_favourites_newest_saved_first_with_pages(store: Store) -> None:
    ids = [await store.add_song(new_song(text=f"song {i}")) for i in range(7)]
    for song_id in [ids[3], ids[0], ids[6], ids[1], ids[5], ids[2], ids[4]]:  # save order != song order
        await store.add_favourite(BOB, song_id)
    await store.add_favourite(CAROL, ids[0])
    await store.toggle_vote(ids[4], CAROL)

    pages = [await store.list_favourites(BOB, limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [[s.id for s in page] for page in pages] == [
        [ids[4], ids[2], ids[5]],
        [ids[1], ids[6], ids[0]],
        [ids[3]],
        [],
    ]
    assert pages[0][0].votes == 1
    assert await store.count_favourites(BOB) == 7
    assert [s.id for s in await store.list_favourites(CAROL)] == [ids[0]]


# ---- forget-me


async def test_forget_user_removes_exactly_their_data(store: Store) -> None:
    alices = await store.add_song(new_song(author=ALICE))
    await store.set_message_id(alices, 77)
    unsent = await store.add_song(new_song(author=ALICE))  # never got a message
    bobs = await store.add_song(new_song(author=BOB))
    await store.toggle_vote(bobs, ALICE)
    await store.toggle_vote(alices, BOB)
    await store.toggle_vote(bobs, CAROL)
    await store.add_favourite(ALICE, bobs)
    await store.add_favourite(ALICE, alices)
    await store.add_favourite(BOB, alices)
    await store.add_favourite(CAROL, unsent)

    expected = ForgetReport(votes=1, favourites=2, songs=2, votes_on_songs=1, saves_of_songs=2)
    assert await store.forget_preview(ALICE) == expected
    report = await store.forget_user(ALICE)

    assert report == ForgetReport(1, 2, 2, 1, 2, messages=2, voted_songs=(bobs,))
    assert await store.get_song(alices) is None and await store.get_song(unsent) is None
    assert (await store.get_song(bobs)).author_id == BOB
    assert (await store.get_song(bobs)).votes == 1  # Carol's vote only
    assert await store.count_favourites(ALICE) == 0
    assert [s.id for s in await store.list_favourites(BOB)] == []  # his save of her song went with it
    assert await store.forget_user(ALICE) == ForgetReport(0, 0, 0, 0, 0)


async def test_forget_user_queues_every_song_message_in_the_same_transaction(target: str, clock: Clock) -> None:
    """The messages still to delete are on record the moment the forget commits, the one never recorded
    (message_id None) included, and stay there across a restart until settled, told and cleared."""
    async with await open_store(target, clock=clock) as store:
        sent = await store.add_song(new_song(author=ALICE))
        await store.set_message_id(sent, 77)
        written = clock.now
        unsent = await store.add_song(new_song(author=ALICE, channel=OTHER_CHANNEL))
        await store.add_song(new_song(author=BOB))
        assert await store.deletion_progress(ALICE) == DeletionProgress(0, 0, 0)
        assert (await store.forget_user(ALICE)).messages == 2
    async with await open_store(target, clock=clock) as store:  # the bot restarted
        first, second = await store.pending_deletions()
        assert (first.user_id, first.channel_id, first.message_id, first.song_id) == (ALICE, CHANNEL, 77, sent)
        assert (second.channel_id, second.message_id, second.song_id) == (OTHER_CHANNEL, None, unsent)
        assert second.written_at > written and second.written_at.tzinfo is not None
        assert await store.deletion_progress(ALICE) == DeletionProgress(2, 0, 0)
        assert await store.settled_forgets() == []
        await store.settle_deletion(first.id, deleted=True)
        await store.settle_deletion(second.id, deleted=False)
        assert await store.pending_deletions() == []
        assert await store.deletion_progress(ALICE) == DeletionProgress(0, 1, 1)
        assert await store.settled_forgets() == [ALICE]
        await store.clear_deletions(ALICE)
        assert await store.settled_forgets() == [] and await store.deletion_progress(ALICE) == DeletionProgress(0, 0, 0)


async def test_a_song_asked_for_before_its_members_forget_is_not_stored(store: Store, clock: Clock) -> None:
    """Songs finish in any shard process: one its member asked for before their forget-me, finishing after it, is
    refused in add_song's own transaction; one asked for afterwards is theirs as usual, and so is any once the
    forget is older than FORGOTTEN_FOR."""
    asked = clock.now
    await store.forget_user(ALICE)
    with pytest.raises(MemberForgottenError):
        await store.add_song(dataclasses.replace(new_song(author=ALICE), asked_at=asked))
    assert (await store.forget_preview(ALICE)).songs == 0
    assert await store.add_song(dataclasses.replace(new_song(author=BOB), asked_at=asked))  # only hers
    later = await store.add_song(dataclasses.replace(new_song(author=ALICE), asked_at=clock()))
    assert (await store.get_song(later)).author_id == ALICE
    clock.now += FORGOTTEN_FOR * 2
    await store.forget_user(CAROL)  # prunes what is older than FORGOTTEN_FOR
    assert await store.add_song(dataclasses.replace(new_song(author=ALICE), asked_at=asked))


FAIL_ON_SONG_DELETE = {
    # The last statement of forget_user fails: everything before it in the same transaction must be undone.
    "sqlite": (
        "CREATE TRIGGER no_deleting_songs BEFORE DELETE ON songs BEGIN SELECT RAISE(ABORT, 'songs are kept'); END",
    ),
    "postgres": (
        "CREATE FUNCTION keep_songs() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'songs are kept'; END $$",
        "CREATE TRIGGER no_deleting_songs BEFORE DELETE ON songs FOR EACH ROW EXECUTE FUNCTION keep_songs()",
    ),
}


async def test_forget_me_is_one_transaction(target: str, store: Store) -> None:
    """If deleting the member's songs fails, their votes and saves (deleted just before, in the same
    transaction) are all still there: a member is never left half forgotten."""
    alices = await store.add_song(new_song(author=ALICE))
    bobs = await store.add_song(new_song(author=BOB))
    await store.toggle_vote(bobs, ALICE)
    await store.add_favourite(ALICE, bobs)
    await store.toggle_vote(alices, BOB)
    before = await store.forget_preview(ALICE)
    await raw_execute(target, *FAIL_ON_SONG_DELETE["postgres" if is_postgres(target) else "sqlite"])

    with pytest.raises(DatabaseError, match="songs are kept") as info:  # the driver's error, wrapped: one contract
        await store.forget_user(ALICE)
    assert isinstance(info.value, StoreError) and not isinstance(info.value, (sqlite3.Error, asyncpg.PostgresError))

    assert await store.forget_preview(ALICE) == before == ForgetReport(1, 1, 1, 1, 0)
    assert await store.pending_deletions() == []  # the queue went with the rest of the transaction
    assert (await store.get_song(bobs)).votes == 1 and await store.count_favourites(ALICE) == 1
    assert await store.toggle_vote(bobs, CAROL) == VoteResult(voted=True, count=2)  # the store works on


# ---- the trainer process


@pytest.fixture
def coordinator(store: Store) -> Coordinator:
    """The processes' coordination on the store's database: the trainer's claim and the relay."""
    return store.coordinator


async def test_one_process_per_database_may_be_the_trainer(target: str, clock: Clock) -> None:
    first, second = await open_store(target, clock=clock), await open_store(target, clock=clock)
    mine, theirs = first.coordinator, second.coordinator
    try:
        assert isinstance(mine, Coordinator)
        assert await mine.claim_trainer() and await mine.claim_trainer()  # its own claim, asked again
        assert not await theirs.claim_trainer()
        await first.close()  # the trainer stops (or dies): its claim goes with it
        for _ in range(50):  # PostgreSQL ends the closed connection's session (and its lock) a moment later
            if await theirs.claim_trainer():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the claim of a closed store was not released")
    finally:
        await first.close()
        await second.close()


# ---- interactions relayed to the trainer process


async def test_relay_each_interaction_goes_to_exactly_one_side(coordinator: Coordinator) -> None:
    first = await coordinator.relay_post(json.dumps({"id": "1"}))
    second = await coordinator.relay_post(json.dumps({"id": "2"}))
    assert await coordinator.relay_withdraw(first) is RelayFate.WITHDRAWN  # nobody took it: the poster answers it
    assert await coordinator.relay_withdraw(first) is RelayFate.TAKEN
    assert await coordinator.relay_take(max_age_s=10) == [json.dumps({"id": "2"})]
    assert (
        await coordinator.relay_withdraw(second) is RelayFate.TAKEN
    )  # the trainer took it: the poster must not answer
    assert await coordinator.relay_take(max_age_s=10) == []


async def test_relay_take_drops_interactions_discord_has_forgotten(coordinator: Coordinator) -> None:
    old = await coordinator.relay_post("old")
    await asyncio.sleep(0.3)
    await coordinator.relay_post("new")
    assert await coordinator.relay_take(max_age_s=0.2) == ["new"]
    assert await coordinator.relay_take(max_age_s=10) == []  # the old one is not left for later...
    assert await coordinator.relay_withdraw(old) is RelayFate.EXPIRED  # ...and its late sender learns it was dropped
    assert await coordinator.relay_withdraw(old) is RelayFate.TAKEN  # once


async def test_relay_take_keeps_the_order_and_wait_wakes_up(target: str, clock: Clock) -> None:
    async with await open_store(target, clock=clock) as shard, await open_store(target, clock=clock) as trainer:
        assert await trainer.coordinator.relay_take(max_age_s=10) == []
        waiting = asyncio.create_task(trainer.coordinator.relay_wait(5.0))
        await asyncio.sleep(0.2)  # the trainer is waiting (PostgreSQL: LISTENing) now
        started = asyncio.get_running_loop().time()
        for n in range(5):
            await shard.coordinator.relay_post(str(n))
        await waiting
        assert asyncio.get_running_loop().time() - started < 1.0  # woken, not timed out
        assert await trainer.coordinator.relay_take(max_age_s=10) == [str(n) for n in range(5)]
