"""Micro-benchmark of bot/store: how many vote clicks per second one process commits, on SQLite and on PostgreSQL.

    python bench/bench_store.py [--clicks 5000] [--path /tmp/bench.db] [--postgres]

Every click is its own transaction (as in the bot). On SQLite that measures commit latency in WAL with
synchronous=NORMAL, plus aiosqlite's thread hop; with --postgres the same clicks also go to a throwaway local
PostgreSQL server (tests/postgres.py; a round trip per statement over loopback, fsync off as on a test server).
SQLite ends with a full integrity_check.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from bot.store import NewSong, open_store
from bot.store.sqlite import SqliteStore


async def run(target: str, clicks: int, label: str) -> None:
    async with await open_store(target) as store:
        songs = [await store.add_song(NewSong(1, 2, 3, "seed", 0.8, 100, i, "hash", "歌词" * 100)) for i in range(100)]
        rng = random.Random(0)
        plan = [(rng.choice(songs), 10**17 + rng.randrange(500)) for _ in range(clicks)]

        start = time.perf_counter()
        for song_id, user_id in plan:
            await store.toggle_vote(song_id, user_id)
        sequential = time.perf_counter() - start

        start = time.perf_counter()
        await asyncio.gather(*(store.toggle_vote(s, u) for s, u in plan))
        concurrent = time.perf_counter() - start

        start = time.perf_counter()
        for _ in range(100):
            await store.top_songs(1, limit=10)
        leaderboard = (time.perf_counter() - start) / 100

        print(f"{label}:")
        print(f"  sequential clicks: {clicks / sequential:8.0f}/s  ({sequential / clicks * 1e6:.0f} µs each)")
        print(f"  concurrent clicks: {clicks / concurrent:8.0f}/s  (gather of {clicks})")
        print(f"  top_songs(limit=10) over {len(songs)} songs: {leaderboard * 1e3:.2f} ms")
        if isinstance(store, SqliteStore):
            with sqlite3.connect(store.path) as conn:  # a second connection, as any other reader would
                print(f"  integrity_check: {', '.join(row[0] for row in conn.execute('PRAGMA integrity_check'))}")


async def main(args: argparse.Namespace, path: Path) -> None:
    await run(str(path), args.clicks, "SQLite")
    if args.postgres:
        from tests.postgres import throwaway_server

        with throwaway_server() as server:
            async with server.database("lyrics_bench") as url:
                await run(url, args.clicks, "PostgreSQL (local throwaway server)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5000)
    parser.add_argument("--path", type=Path, default=None, help="database file (default: a temporary one)")
    parser.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL server")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(arguments, arguments.path or Path(tmp) / "bench.db"))
