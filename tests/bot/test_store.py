"""bot/store.py against real SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import store as store_module
from bot.store import (
    LATEST_VERSION,
    MIGRATIONS,
    CorruptDatabaseError,
    ForgetReport,
    NewSong,
    SchemaTooNewError,
    SelfVoteError,
    SongNotFoundError,
    Store,
    StoreError,
    VoteResult,
)

REPO = Path(__file__).resolve().parents[2]
GUILD, OTHER_GUILD = 1_100_000_000_000_000_001, 1_100_000_000_000_000_002
ALICE, BOB, CAROL = 2_200_000_000_000_000_001, 2_200_000_000_000_000_002, 2_200_000_000_000_000_003
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand; each call also ticks 1 ms so order is unambiguous."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def new_song(author: int | None = ALICE, guild: int = GUILD, text: str = "窗外的麻雀 在电线杆上多嘴") -> NewSong:
    return NewSong(
        guild_id=guild,
        channel_id=3_300_000_000_000_000_001,
        author_id=author,
        seed="窗外",
        temperature=0.8,
        length=120,
        random_seed=1234,
        bundle_hash="ab12cd34",
        text=text,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock):
    async with await Store.open(tmp_path / "bot.db", clock=clock) as s:
        yield s


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in the folder with its bytes: 'nothing was written' means this is unchanged."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def raw_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def integrity(path: Path) -> str:
    """SQLite's full integrity check, from a second connection: "ok", or its problems one per line."""
    with sqlite3.connect(path) as conn:
        return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


# ---- opening and migrations


async def test_open_creates_folder_and_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "bot.db"
    store = await Store.open(path)
    assert raw_version(store.path) == LATEST_VERSION >= 2
    assert integrity(store.path) == "ok"
    await store.close()
    await store.close()  # closing twice is harmless
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"songs", "votes", "favourites"} <= tables


async def test_open_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.touch()  # a zero-byte file is an empty database to SQLite
    async with await Store.open(path) as store:
        assert raw_version(store.path) == LATEST_VERSION


@pytest.mark.parametrize("start", range(1, LATEST_VERSION))
async def test_migrates_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # build the file exactly as version `start` of the bot left it
        for migration in MIGRATIONS[:start]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {start}")
        conn.execute(  # v1 columns only, so the same row is valid at every version
            "INSERT INTO songs (id, guild_id, channel_id, author_id, seed, temperature, length, random_seed,"
            " text, message_id, created_at) VALUES (7, ?, 5, ?, '窗外', 0.8, 120, 42, '歌词', 99, ?)",
            (GUILD, ALICE, T0.isoformat(timespec="microseconds")),
        )
        conn.execute("INSERT INTO votes VALUES (7, ?, ?)", (BOB, T0.isoformat(timespec="microseconds")))
        conn.execute("INSERT INTO favourites VALUES (?, 7, ?)", (CAROL, T0.isoformat(timespec="microseconds")))
    conn.close()

    async with await Store.open(path) as store:
        assert raw_version(store.path) == LATEST_VERSION
        song = await store.get_song(7)
        assert song is not None
        assert (song.guild_id, song.author_id, song.text, song.message_id, song.votes) == (GUILD, ALICE, "歌词", 99, 1)
        assert song.created_at == T0 and song.bundle_hash is None  # v2's column, empty for old songs
        assert [s.id for s in await store.list_favourites(CAROL)] == [7]
        assert (await store.toggle_vote(7, CAROL)).count == 2  # still fully usable
        new_id = await store.add_song(new_song())
        assert new_id > 7
    assert raw_version(path) == LATEST_VERSION


async def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bot.db"
    async with await Store.open(path) as store:
        await store.add_song(new_song())
    broken = ("CREATE TABLE half_done (x)", "SELECT * FROM no_such_table")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(store_module, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError) as info:
        await Store.open(path)
    assert any(f"to {LATEST_VERSION + 1}" in note for note in info.value.__notes__)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
        assert conn.execute("SELECT COUNT(*) FROM songs").fetchone()[0] == 1
    conn.close()


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
async def test_refuses_newer_schema_and_writes_nothing(tmp_path: Path, journal_mode: str) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal_mode}")
        conn.execute("CREATE TABLE songs (id INTEGER PRIMARY KEY, shiny_new_column TEXT)")
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    conn.close()
    before = snapshot(tmp_path)
    assert list(before) == ["future.db"]

    with pytest.raises(SchemaTooNewError) as info:
        await Store.open(path)
    assert str(path) in str(info.value)
    assert f"version {LATEST_VERSION + 5}" in str(info.value) and str(LATEST_VERSION) in str(info.value)
    assert isinstance(info.value, StoreError)
    assert snapshot(tmp_path) == before  # same bytes, and no -wal/-shm appeared


def _valid_db_with_trashed_pages(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [("歌" * 50,)] * 2000)
        conn.execute("CREATE INDEX t_x ON t(x)")
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 6] = random.Random(1).randbytes(4096 * 3)  # header intact, b-tree pages garbage
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["random_bytes", "text_file", "trashed_pages"])
async def test_refuses_corrupt_file_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bot.db"
    if kind == "random_bytes":
        path.write_bytes(random.Random(0).randbytes(8192))
    elif kind == "text_file":
        path.write_text("這不是資料庫\n" * 200, encoding="utf-8")
    else:
        _valid_db_with_trashed_pages(path)
    before = snapshot(tmp_path)

    with pytest.raises(CorruptDatabaseError) as info:
        await Store.open(path)
    assert str(path) in str(info.value) and isinstance(info.value, StoreError)
    assert snapshot(tmp_path) == before


async def test_memory_database() -> None:
    async with await Store.open(":memory:") as store:
        song_id = await store.add_song(new_song())
        assert (await store.toggle_vote(song_id, BOB)).count == 1


# ---- songs


async def test_add_get_and_message_id(store: Store, clock: Clock) -> None:
    big = 2**63 - 1  # the largest snowflake SQLite's INTEGER holds
    song_id = await store.add_song(new_song(author=big))
    assert await store.get_song(song_id + 1000) is None
    await store.set_message_id(song_id, big - 1)
    song = await store.get_song(song_id)
    assert song is not None
    assert (song.author_id, song.message_id, song.bundle_hash, song.votes) == (big, big - 1, "ab12cd34", 0)
    assert (song.seed, song.temperature, song.length, song.random_seed) == ("窗外", 0.8, 120, 1234)
    assert song.created_at == clock.now and song.created_at.tzinfo is not None
    with pytest.raises(SongNotFoundError):
        await store.set_message_id(song_id + 1000, 1)


async def test_get_song_scoped_to_guild(store: Store) -> None:
    song_id = await store.add_song(new_song(guild=GUILD))
    assert (await store.get_song(song_id, guild_id=GUILD)) is not None
    assert await store.get_song(song_id, guild_id=OTHER_GUILD) is None


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


async def test_concurrent_toggles_count_exactly(store: Store) -> None:
    song_id = await store.add_song(new_song(author=ALICE))
    users = [3_000_000_000_000_000_000 + i for i in range(20)]
    rng = random.Random(7)
    clicks = [rng.choice(users) for _ in range(100)]
    expected = sum(clicks.count(u) % 2 for u in users)  # a user's vote stands after an odd number of clicks

    results = await asyncio.gather(*(store.toggle_vote(song_id, u) for u in clicks))

    assert (await store.get_song(song_id)).votes == expected
    for user in users:  # each user's clicks alternated vote, withdraw, vote...
        mine = [r.voted for u, r in zip(clicks, results, strict=True) if u == user]
        assert mine == [i % 2 == 0 for i in range(len(mine))]
    # The lock is FIFO, so the clicks ran in gather order: every count is the previous one +-1.
    count = 0
    for result in results:
        count += 1 if result.voted else -1
        assert result.count == count
    assert count == expected


async def test_two_connections_toggling_stay_exact(tmp_path: Path) -> None:
    """Correct beyond one connection's lock: BEGIN IMMEDIATE serialises two processes' writers."""
    path = tmp_path / "bot.db"
    async with await Store.open(path) as a, await Store.open(path) as b:
        song_id = await a.add_song(new_song(author=ALICE))
        users = [4_000_000_000_000_000_000 + i for i in range(10)]
        clicks = [users[i % 10] for i in range(30)]  # each user clicks 3 times: their vote stands
        await asyncio.gather(*((a if i % 2 else b).toggle_vote(song_id, u) for i, u in enumerate(clicks)))
        assert (await a.get_song(song_id)).votes == (await b.get_song(song_id)).votes == 10


async def test_top_songs_order_period_and_guild(store: Store, clock: Clock) -> None:
    now = datetime.now(UTC)
    clock.now = now - timedelta(days=40)
    ancient = await store.add_song(new_song(text="old hit"))
    clock.now = now - timedelta(days=3)
    one = await store.add_song(new_song(text="one vote"))
    two_old = await store.add_song(new_song(text="two votes, older"))
    two_new = await store.add_song(new_song(text="two votes, newer"))
    await store.add_song(new_song(text="no votes"))
    foreign = await store.add_song(new_song(guild=OTHER_GUILD))
    for song_id, voters in [(ancient, 5), (one, 1), (two_old, 2), (two_new, 2), (foreign, 3)]:
        for v in range(voters):
            await store.toggle_vote(song_id, 5_000_000_000_000_000_000 + v)

    week = await store.top_songs(GUILD, since=now - timedelta(days=7))
    assert [s.id for s in week] == [two_new, two_old, one]  # no zero-vote song, no other guild
    assert [s.votes for s in week] == [2, 2, 1]
    all_time = await store.top_songs(GUILD, since=None)
    assert [s.id for s in all_time] == [ancient, two_new, two_old, one]
    assert [s.id for s in await store.top_songs(GUILD, limit=2)] == [ancient, two_new]
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


# ---- durability and privacy


async def test_reopen_keeps_everything(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "bot.db"
    async with await Store.open(path, clock=clock) as store:
        song_id = await store.add_song(new_song())
        await store.set_message_id(song_id, 77)
        await store.toggle_vote(song_id, BOB)
        await store.add_favourite(CAROL, song_id)
        before = await store.get_song(song_id)
    async with await Store.open(path, clock=clock) as store:
        assert await store.get_song(song_id) == before
        assert before.votes == 1 and before.message_id == 77
        assert [s.id for s in await store.list_favourites(CAROL)] == [song_id]
        assert await store.toggle_vote(song_id, BOB) == VoteResult(voted=False, count=0)


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

    assert report == ForgetReport(1, 2, 2, 1, 2, messages=((3_300_000_000_000_000_001, 77),))
    assert await store.get_song(alices) is None and await store.get_song(unsent) is None
    assert (await store.get_song(bobs)).author_id == BOB
    assert (await store.get_song(bobs)).votes == 1  # Carol's vote only
    assert await store.count_favourites(ALICE) == 0
    assert [s.id for s in await store.list_favourites(BOB)] == []  # his save of her song went with it
    assert await store.forget_user(ALICE) == ForgetReport(0, 0, 0, 0, 0)


async def test_a_failed_commit_rolls_back(store: Store) -> None:
    """A COMMIT that fails (here a deferred foreign key: a vote for no song) leaves no transaction open."""
    song = await store.add_song(new_song())
    with pytest.raises(sqlite3.IntegrityError):
        async with store._write() as db:
            await db.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, not at the INSERT
            await db.execute("INSERT INTO votes (song_id, user_id, created_at) VALUES (?, ?, ?)", (9999, BOB, "x"))
            await db.execute("INSERT INTO votes (song_id, user_id, created_at) VALUES (?, ?, ?)", (song, CAROL, "x"))
    assert not store._db.in_transaction
    assert (await store.get_song(song)).votes == 0  # the good row of the failed transaction is gone too
    assert await store.toggle_vote(song, BOB) == VoteResult(voted=True, count=1)  # the next write works


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bot.store import NewSong, Store

    async def main(path):
        store = await Store.open(path)
        songs = [await store.add_song(NewSong(1, 2, 3, "seed", 0.8, 50, i, "hash", "text")) for i in range(5)]
        n = 0
        while True:  # until SIGKILL: every user votes once, so each acknowledged vote must stay
            song, user = songs[n % 5], 10**17 + n
            result = await store.toggle_vote(song, user)
            assert result.voted
            print(song, user, flush=True)  # printed only after COMMIT returned: acknowledged
            n += 1

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_acknowledged_votes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, child.kill)  # never hang the suite on a stuck child
    watchdog.start()
    try:
        acked = []
        while len(acked) < 300:
            line = child.stdout.readline()
            assert line, f"child died early: {child.stderr.read()}"
            acked.append(line)
        os.kill(child.pid, signal.SIGKILL)  # mid-burst: it is committing the next votes right now
        rest, _ = child.communicate()
    finally:
        watchdog.cancel()
    assert child.returncode == -signal.SIGKILL
    acked += rest.splitlines(keepends=True)
    votes = {tuple(map(int, line.split())) for line in acked if line.endswith("\n")}
    assert len(votes) >= 300
    assert Path(f"{path}-wal").exists()  # the kill left an un-checkpointed WAL to recover from

    async def check() -> None:
        async with await Store.open(path) as store:
            assert integrity(store.path) == "ok"
        with sqlite3.connect(path) as conn:
            stored = set(conn.execute("SELECT song_id, user_id FROM votes"))
        conn.close()
        assert votes <= stored  # every acknowledged vote is there (a few unacknowledged ones may be too)
        assert len(stored) - len(votes) <= 1  # at most the one committed but not yet printed

    asyncio.run(check())
