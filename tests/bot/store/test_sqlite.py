"""What only the SQLite store can show: its file (created, migrated from PRAGMA user_version, refused untouched when
newer or damaged), its WAL surviving kill -9, the FIFO order of one connection, and a failed COMMIT."""

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
from pathlib import Path

import pytest

from bot.store import CorruptDatabaseError, DatabaseError, RelayFate, SchemaTooNewError, StoreError, VoteResult
from bot.store import sqlite as sqlite_store
from bot.store.sqlite import LATEST_VERSION, MIGRATIONS, SqliteStore
from tests.bot.store.helpers import ALICE, BOB, CAROL, GUILD, T0, Clock, new_song

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock):
    async with await SqliteStore.open(tmp_path / "bot.db", clock=clock) as s:
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
    store = await SqliteStore.open(path)
    assert raw_version(store.path) == LATEST_VERSION >= 3
    assert integrity(store.path) == "ok"
    await store.close()
    await store.close()  # closing twice is harmless
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"songs", "votes", "favourites", "relayed_interactions"} <= tables


async def test_open_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.touch()  # a zero-byte file is an empty database to SQLite
    async with await SqliteStore.open(path) as store:
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

    async with await SqliteStore.open(path) as store:
        assert raw_version(store.path) == LATEST_VERSION
        song = await store.get_song(7)
        assert song is not None
        assert (song.guild_id, song.author_id, song.text, song.message_id, song.votes) == (GUILD, ALICE, "歌词", 99, 1)
        assert song.created_at == T0 and song.bundle_hash is None  # v2's column, empty for old songs
        assert [s.id for s in await store.list_favourites(CAROL)] == [7]
        assert (await store.toggle_vote(7, CAROL)).count == 2  # still fully usable
        new_id = await store.add_song(new_song())
        assert new_id > 7
        ticket = await store.coordinator.relay_post("{}")  # v3's table
        assert await store.coordinator.relay_withdraw(ticket) is RelayFate.WITHDRAWN
    assert raw_version(path) == LATEST_VERSION


async def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bot.db"
    async with await SqliteStore.open(path) as store:
        await store.add_song(new_song())
    broken = ("CREATE TABLE half_done (x)", "SELECT * FROM no_such_table")
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(sqlite_store, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(DatabaseError) as info:
        await SqliteStore.open(path)
    assert f"to {LATEST_VERSION + 1}" in str(info.value)  # the note, in the one line the person reads
    assert any(f"to {LATEST_VERSION + 1}" in note for note in info.value.__cause__.__notes__)
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
        await SqliteStore.open(path)
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
        await SqliteStore.open(path)
    assert str(path) in str(info.value) and isinstance(info.value, StoreError)
    assert snapshot(tmp_path) == before


async def test_memory_database() -> None:
    async with await SqliteStore.open(":memory:") as store:
        song_id = await store.add_song(new_song())
        assert (await store.toggle_vote(song_id, BOB)).count == 1


# ---- one connection's order


async def test_concurrent_toggles_on_one_connection_run_in_arrival_order(store: SqliteStore) -> None:
    """The store's lock is FIFO: clicks are served in the order they came, each count the previous one +-1."""
    song_id = await store.add_song(new_song(author=ALICE))
    users = [3_000_000_000_000_000_000 + i for i in range(20)]
    rng = random.Random(7)
    clicks = [rng.choice(users) for _ in range(100)]

    results = await asyncio.gather(*(store.toggle_vote(song_id, u) for u in clicks))

    for user in users:  # each user's clicks alternated vote, withdraw, vote...
        mine = [r.voted for u, r in zip(clicks, results, strict=True) if u == user]
        assert mine == [i % 2 == 0 for i in range(len(mine))]
    count = 0
    for result in results:
        count += 1 if result.voted else -1
        assert result.count == count
    assert count == (await store.get_song(song_id)).votes


async def test_a_failed_commit_rolls_back(store: SqliteStore) -> None:
    """A COMMIT that fails (here a deferred foreign key: a vote for no song) leaves no transaction open."""
    song = await store.add_song(new_song())
    with pytest.raises(DatabaseError, match="FOREIGN KEY") as info:
        async with store._write() as db:
            await db.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT, not at the INSERT
            await db.execute("INSERT INTO votes (song_id, user_id, created_at) VALUES (?, ?, ?)", (9999, BOB, "x"))
            await db.execute("INSERT INTO votes (song_id, user_id, created_at) VALUES (?, ?, ?)", (song, CAROL, "x"))
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert not store._db.in_transaction
    assert (await store.get_song(song)).votes == 0  # the good row of the failed transaction is gone too
    assert await store.toggle_vote(song, BOB) == VoteResult(voted=True, count=1)  # the next write works


async def test_forget_me_leaves_no_text_in_the_file(tmp_path: Path) -> None:
    """secure_delete and the checkpoint after forget-me: the forgotten song's text is in neither file."""
    path = tmp_path / "bot.db"
    secret = "只有我知道的秘密歌词"
    async with await SqliteStore.open(path) as store:
        song_id = await store.add_song(new_song(author=ALICE, text=secret * 20))
        await store.toggle_vote(song_id, BOB)
        await store.forget_user(ALICE)
        files = [path, Path(f"{path}-wal")]
        assert not any(secret.encode() in f.read_bytes() for f in files if f.exists())


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bot.store import NewSong
    from bot.store.sqlite import SqliteStore

    async def main(path):
        store = await SqliteStore.open(path)
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
        async with await SqliteStore.open(path) as store:
            assert integrity(store.path) == "ok"
        with sqlite3.connect(path) as conn:
            stored = set(conn.execute("SELECT song_id, user_id FROM votes"))
        conn.close()
        assert votes <= stored  # every acknowledged vote is there (a few unacknowledged ones may be too)
        assert len(stored) - len(votes) <= 1  # at most the one committed but not yet printed

    asyncio.run(check())
