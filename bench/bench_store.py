"""Micro-benchmark of bot/store.py: how many vote clicks per second one connection commits.

    python bench/bench_store.py [--clicks 5000] [--path /tmp/bench.db]

Every click is its own transaction (as in the bot), so this measures commit latency in WAL
with synchronous=NORMAL, plus aiosqlite's thread hop. Ends with a full integrity_check.
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

from bot.store import NewSong, Store


async def main(clicks: int, path: Path) -> None:
    async with await Store.open(path) as store:
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

        print(f"sequential clicks: {clicks / sequential:8.0f}/s  ({sequential / clicks * 1e6:.0f} µs each)")
        print(f"concurrent clicks: {clicks / concurrent:8.0f}/s  (gather of {clicks})")
        print(f"top_songs(limit=10) over {len(songs)} songs: {leaderboard * 1e3:.2f} ms")
        with sqlite3.connect(store.path) as conn:  # a second connection, as any other reader would
            print(f"integrity_check: {', '.join(row[0] for row in conn.execute('PRAGMA integrity_check'))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5000)
    parser.add_argument("--path", type=Path, default=None, help="database file (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.clicks, args.path or Path(tmp) / "bench.db"))
