"""Benchmark of the bot as shards: vote clicks split across two shard processes on one database, and how long a new
model takes to reach the process that does not train.

    python bench/bench_shards.py [--clicks 1000] [--users 100] [--songs 10] [--concurrency 50]
                                 [--model models/lyrics.pt] [--swaps 5] [--poll 2.0] [--only sqlite1|sqlite2|postgres]

1. Votes. `python -m bot` processes (as production runs them) against tests/fakediscord, which has two guilds,
   one on each of 2 shards:
     sqlite1   one process running both shards, on SQLite: the single-machine default
     sqlite2   two processes (shards 0 and 1), one SQLite file (one machine)
     postgres  two processes (shards 0 and 1), PostgreSQL (a throwaway server: tests/postgres.py)
   `--songs` songs are written (half in each guild), then `--clicks` vote clicks from `--users` members on random
   songs; every other click is delivered to the other shard's process (as while a bot reshards), so both processes
   toggle the same members' votes on the same songs. At most `--concurrency` clicks await their answer at a time.
   Prints how many were answered, p50/p95/max of the time from dispatch to the interaction callback (Discord's
   3 s rule), clicks per second, and whether every song's count in the database equals the expected toggles.
2. A new model. With the two PostgreSQL processes still running, the model file is replaced `--swaps` times
   (os.replace, as the trainer's promotion does) by another bundle; prints how long each took to be live in the
   process that does not train (until its log says so), which looks every `--poll` seconds (LYRICS_MODEL_POLL).

Without a bundle at --model it trains a tiny one on data/sample_lyrics.txt first. The bot processes run with
one torch thread each; the stand-in runs in this process. Numbers are for the machine it runs on: compare rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing

import asyncpg  # noqa: E402
from bench_votes import ensure_bundle, percentile, song_id, vote_label  # noqa: E402  (this folder is first on sys.path)

from model.checkpoint import BUNDLE_FORMAT, atomic_save, safe_load  # noqa: E402
from tests.fakediscord import FakeDiscord, SentMessage, make_guild, make_user, snowflake_on_shard  # noqa: E402
from tests.postgres import throwaway_server  # noqa: E402

SEED = "窗外的麻雀"
START_TIMEOUT = 180  # two bot processes importing torch at once on two busy cores
NEW_MODEL = re.compile(r"a new model reached this process: bundle (?P<hash>[0-9a-f]+), loaded in (?P<load>[0-9.]+)s")


@dataclass(frozen=True)
class Layout:
    name: str
    processes: tuple[tuple[str, bool], ...]  # (LYRICS_SHARD_IDS, trainer) per process
    postgres: bool


LAYOUTS = {
    "sqlite1": Layout("1 process, both shards, SQLite", (("0,1", True),), postgres=False),
    "sqlite2": Layout("2 processes (shard 0, shard 1), one SQLite file", (("0", True), ("1", False)), postgres=False),
    "postgres": Layout("2 processes (shard 0, shard 1), PostgreSQL", (("0", True), ("1", False)), postgres=True),
}


def bot_env(fake: FakeDiscord, workdir: Path, model: Path, database: str, args: argparse.Namespace) -> dict[str, str]:
    env = {
        "DISCORD_TOKEN": fake.token,
        "LYRICS_DISCORD_API": fake.rest_base,
        "LYRICS_DISCORD_GATEWAY": fake.gateway_url,
        "LYRICS_MODEL": str(model),
        "LYRICS_DB": str(workdir / "lyrics.db"),
        "LYRICS_CORPUS": str(REPO / "data" / "sample_lyrics.txt"),
        "LYRICS_CORPORA": str(workdir / "corpora"),
        "LYRICS_DEVICE": "cpu",
        "LYRICS_TORCH_THREADS": "1",
        "LYRICS_GUILD_IDS": ",".join(g["id"] for g in fake.guilds),
        "LYRICS_COOLDOWN": "0",
        "LYRICS_USER_IN_FLIGHT": "100",
        "LYRICS_SHARD_COUNT": "2",
        "LYRICS_MODEL_POLL": str(args.poll),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HOME": str(workdir),
    }
    if database.startswith("postgresql://"):
        env["LYRICS_DATABASE_URL"] = database
    return env


@contextlib.asynccontextmanager
async def processes(
    layout: Layout, env: dict[str, str], workdir: Path
) -> AsyncIterator[list[tuple[asyncio.subprocess.Process, Path]]]:
    started = []
    try:
        for shards, trainer in layout.processes:
            log = workdir / f"shards-{shards.replace(',', '-')}.log"
            with log.open("wb") as sink:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    cwd=workdir,
                    env={**env, "LYRICS_SHARD_IDS": shards, "LYRICS_TRAINER": "1" if trainer else "0"},
                    stdout=sink,
                    stderr=sink,
                )
            started.append((proc, log))
        yield started
    finally:
        for proc, _ in started:
            if proc.returncode is None:
                proc.terminate()
        for proc, _ in started:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def write_songs(fake: FakeDiscord, count: int) -> list[SentMessage]:
    replies = [
        await fake.send_slash_command("lyrics", {"seed": SEED, "length": 10}, guild_id=fake.guilds[n % 2]["id"])
        for n in range(count)
    ]
    messages = [await inter.wait_final(timeout=60) for inter in replies]
    if any(m is None or not m.custom_ids() for m in messages):
        raise RuntimeError(f"a /lyrics reply has no buttons: {messages}")
    return messages


async def stored_votes(database: str, song_ids: list[int]) -> list[int]:
    query = "SELECT COUNT(*) FROM votes WHERE song_id = {}"
    if database.startswith("postgresql://"):
        conn = await asyncpg.connect(database)
        try:
            return [await conn.fetchval(query.format("$1"), sid) for sid in song_ids]
        finally:
            await conn.close()
    with sqlite3.connect(database) as conn:
        counts = [conn.execute(query.format("?"), (sid,)).fetchone()[0] for sid in song_ids]
    conn.close()
    return counts


async def burst(fake: FakeDiscord, database: str, args: argparse.Namespace, layout: Layout) -> None:
    songs = await write_songs(fake, args.songs)
    voters = [make_user(f"fan{i}") for i in range(args.users)]
    rng = random.Random(0)
    plan = [(rng.randrange(len(songs)), rng.randrange(len(voters))) for _ in range(args.clicks)]
    slots = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []
    by_shard: Counter[int] = Counter()

    async def click(n: int, song: int, voter: int) -> None:
        async with slots:
            message = songs[song]
            inter = await fake.click_button(message, f"song:vote:{song_id(message)}", user=voters[voter], shard=n % 2)
            by_shard[inter.shard] += 1
            with contextlib.suppress(TimeoutError):
                await fake.wait_until(lambda: inter.callbacks, timeout=10)
            if inter.callbacks:
                latencies.append(inter.callbacks[0]["elapsed"])

    started = time.perf_counter()
    await asyncio.gather(*(click(n, song, voter) for n, (song, voter) in enumerate(plan)))
    wall = time.perf_counter() - started
    pairs = Counter(plan)
    expected = [sum(n % 2 for (s, _), n in pairs.items() if s == index) for index in range(len(songs))]
    stored = await stored_votes(database, [song_id(m) for m in songs])
    # The last answers may be followed by a settling edit or two (bot/exts/favourites.py, LabelSync).
    with contextlib.suppress(TimeoutError):
        await fake.wait_until(lambda: [vote_label(m) for m in songs] == [str(n) for n in stored], timeout=5)
    labels = [int(vote_label(m)) for m in songs]
    print(f"{layout.name}:")
    print(
        f"  {len(plan)} clicks from {args.users} members on {len(songs)} songs, "
        f"delivered to shard 0 / 1: {by_shard[0]} / {by_shard[1]}; at most {args.concurrency} awaiting an answer"
    )
    print(f"  answered {len(latencies)}/{len(plan)} in {wall:.2f}s = {len(latencies) / wall:.0f} clicks/s")
    print(
        f"  time to the interaction callback: p50 {percentile(latencies, 0.5) * 1e3:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms "
        f"(mean {statistics.fmean(latencies) * 1e3:.0f} ms)"
    )
    print(
        f"  database counts equal the expected toggles: {stored == expected} "
        f"({sum(stored)} votes; expected {sum(expected)})"
    )
    off = sum(label != count for label, count in zip(labels, stored, strict=True))
    print(f"  vote labels show the stored counts: {labels == stored} ({off} off)")
    print(f"  stand-in rule violations: {len(fake.violations)} {fake.violations[:3]}")


def variant(bundle: Path, out: Path) -> Path:
    """Another bundle with the same network (its metrics differ, so its hash does): what a new training run
    would publish, at the same size."""
    data = safe_load(bundle, BUNDLE_FORMAT)
    data["metrics"] = {**data["metrics"], "bpc": float(data["metrics"].get("bpc", 5.0)) - 0.001}
    atomic_save(data, out)
    return out


async def propagation(model: Path, bundles: list[Path], follower_log: Path, args: argparse.Namespace) -> None:
    times, loads = [], []
    for swap in range(args.swaps):
        source = bundles[(swap + 1) % 2]  # the model starts as bundles[0]
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        temp = model.with_name(f".{model.name}.bench")
        temp.write_bytes(source.read_bytes())
        seen = follower_log.read_text().count("a new model reached this process")
        os.replace(temp, model)  # the trainer's promotion does this
        started = time.perf_counter()
        while True:
            text = follower_log.read_text()
            found = [m for m in NEW_MODEL.finditer(text)]
            if len(found) > seen and digest.startswith(found[-1]["hash"]):
                times.append(time.perf_counter() - started)
                loads.append(float(found[-1]["load"]))
                break
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"the new model did not reach the follower in 60 s; see {follower_log}")
            await asyncio.sleep(0.01)
        await asyncio.sleep(args.poll * random.Random(swap).random())  # land anywhere in the next poll interval
    size = model.stat().st_size / 1e6
    print(f"a new model ({size:.1f} MB) reaching the process that does not train, LYRICS_MODEL_POLL={args.poll:g}s:")
    print(
        f"  {args.swaps} swaps: median {statistics.median(times):.2f}s, min {min(times):.2f}s, max {max(times):.2f}s "
        f"(each: {', '.join(f'{t:.2f}' for t in times)}); loading it took {statistics.median(loads):.1f}s of that"
    )


async def run_layout(key: str, args: argparse.Namespace, bundle: Path, workdir: Path, database: str) -> None:
    layout = LAYOUTS[key]
    folder = workdir / key
    (folder / "models").mkdir(parents=True)
    model = folder / "models" / "lyrics.pt"
    model.write_bytes(bundle.read_bytes())
    owner, user = make_user("owner"), make_user("alice")
    guilds = [
        make_guild("zero", id=snowflake_on_shard(0, 2), members=[owner, user], owner=owner),
        make_guild("one", id=snowflake_on_shard(1, 2), members=[owner, user], owner=owner),
    ]
    fake = FakeDiscord(guilds, heartbeat_interval_ms=1000)
    fake.owner, fake.user = owner, user
    await fake.start()
    try:
        env = bot_env(fake, folder, model, database, args)
        if not database.startswith("postgresql://"):
            database = env["LYRICS_DB"]
        async with processes(layout, env, folder) as running:
            try:
                await fake.wait_ready(timeout=START_TIMEOUT, shards=[0, 1])
            except TimeoutError:
                raise RuntimeError(f"the bot did not start; see the logs in {folder}") from None
            await burst(fake, database, args, layout)
            if key == "postgres" and args.swaps:
                bundles = [model.with_name("a.pt"), variant(bundle, model.with_name("b.pt"))]
                bundles[0].write_bytes(bundle.read_bytes())
                await propagation(model, bundles, running[1][1], args)
            if any(proc.returncode is not None for proc, _ in running):
                raise RuntimeError(f"a bot process died; see the logs in {folder}")
    finally:
        await fake.stop()


async def main(args: argparse.Namespace, workdir: Path) -> None:
    bundle = ensure_bundle(args.model, workdir)
    keys = [args.only] if args.only else list(LAYOUTS)
    for key in keys:
        if LAYOUTS[key].postgres:
            with throwaway_server() as server:
                async with server.database("lyrics_bench") as url:
                    await run_layout(key, args, bundle, workdir, url)
        else:
            await run_layout(key, args, bundle, workdir, "")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "lyrics.pt")
    parser.add_argument("--clicks", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--songs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50, help="clicks awaiting an answer at once")
    parser.add_argument("--swaps", type=int, default=5, help="new models published (0: skip part 2)")
    parser.add_argument("--poll", type=float, default=2.0, help="LYRICS_MODEL_POLL of the bot processes")
    parser.add_argument("--only", choices=sorted(LAYOUTS), help="run one layout only")
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases and logs in this folder")
    arguments = parser.parse_args()
    if arguments.keep:
        arguments.keep.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(arguments, arguments.keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(arguments, Path(tmp)))
