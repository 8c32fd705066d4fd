"""Benchmark of the 👍 button: a burst of vote clicks through the Discord stand-in, then a kill -9 in the middle of one.

    python bench/bench_votes.py [--clicks 1000] [--users 100] [--songs 10] [--concurrency 50] [--kill-after 0.4]

1. Burst. The real bot (built by `bot.client.create_bot`, as `python -m bot` builds it) runs in this
   process against tests/fakediscord. A few /lyrics replies are written, then `--clicks` vote clicks from
   `--users` members on random songs are dispatched, at most `--concurrency` awaiting their answer at a
   time (use --concurrency 1000 for everything at once). Prints how many were answered, p50/p95/max of the
   time from dispatch to the interaction callback (Discord's 3 s rule), the clicks per second, whether the
   count in the database equals the expected toggles for every song, and whether every vote button ended
   up showing that count.
2. kill -9. `python -m bot` runs as a child process pointed at the stand-in with LYRICS_DISCORD_API and
   LYRICS_DISCORD_GATEWAY. Every (song, member) pair is clicked once, and once `--kill-after` of them were
   acknowledged the child gets SIGKILL. Then the database is opened: PRAGMA integrity_check must say ok, and
   every vote whose click was acknowledged (its callback reached the stand-in) must be there.

Without a bundle at --model it trains a tiny one on data/sample_lyrics.txt first (a few seconds); the
model only writes the songs being voted on, so its quality does not matter here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing

from bot.client import create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakediscord import FakeDiscord, Interaction, SentMessage, make_user, running_bot  # noqa: E402

SEED = "窗外的麻雀"
START_TIMEOUT = 120  # importing torch and discord.py in the child on two busy cores


@dataclass(frozen=True)
class Click:
    song: int  # index into the song messages
    user: int  # index into the voters


def ensure_bundle(path: Path | None, workdir: Path) -> Path:
    if path is not None and path.is_file():
        return path
    from model.train import TrainConfig, train

    out = workdir / "tiny.pt"
    print(f"training a tiny model on data/sample_lyrics.txt into {out} ...", flush=True)
    train(
        TrainConfig(
            corpus=str(REPO / "data" / "sample_lyrics.txt"),
            out=str(out),
            epochs=1,
            hidden=32,
            embed=16,
            device="cpu",
            threads=1,
        )
    )
    return out


def bot_env(fake: FakeDiscord, bundle: Path, db: Path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": fake.token,
        "LYRICS_MODEL": str(bundle),
        "LYRICS_DB": str(db),
        "LYRICS_DEVICE": "cpu",
        "LYRICS_TORCH_THREADS": "1",
        "LYRICS_GUILD_IDS": fake.guild["id"],
        "LYRICS_COOLDOWN": "0",
        "LYRICS_USER_IN_FLIGHT": "100",
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def song_id(message: SentMessage) -> int:
    return int(message.custom_ids()[0].rsplit(":", 1)[1])  # "song:vote:<id>" comes first


def vote_label(message: SentMessage) -> str:
    return message.components[0]["components"][0]["label"]


async def write_songs(fake: FakeDiscord, count: int, timeout: float = 60) -> list[SentMessage]:
    replies = [await fake.send_slash_command("lyrics", {"seed": SEED, "length": 10}) for _ in range(count)]
    messages = [await inter.wait_final(timeout=timeout) for inter in replies]
    if any(m is None or not m.custom_ids() for m in messages):
        raise RuntimeError(f"a /lyrics reply has no buttons: {messages}")
    return messages


async def dispatch(
    fake: FakeDiscord,
    songs: list[SentMessage],
    voters: list[dict[str, Any]],
    plan: list[Click],
    concurrency: int,
    stop: asyncio.Event | None = None,
) -> list[Interaction]:
    """Click as planned, at most `concurrency` clicks awaiting their answer; stop early when `stop` is set."""
    slots = asyncio.Semaphore(concurrency)
    sent: list[Interaction] = []

    async def one(click: Click) -> None:
        async with slots:
            if stop is not None and stop.is_set():
                return
            message = songs[click.song]
            try:
                inter = await fake.click_button(message, f"song:vote:{song_id(message)}", user=voters[click.user])
            except RuntimeError:  # no gateway connection: the bot was killed
                return
            sent.append(inter)
            stopped = stop.is_set if stop is not None else lambda: False
            # A killed bot answers no more: stop waiting then (counted as unanswered below).
            with contextlib.suppress(TimeoutError):
                await fake.wait_until(lambda: inter.callbacks or stopped(), timeout=10)

    await asyncio.gather(*(one(click) for click in plan))
    return sent


# ---------------------------------------------------------------------------------------------
# 1. the burst


async def burst(args: argparse.Namespace, bundle: Path, workdir: Path) -> None:
    fake = FakeDiscord(heartbeat_interval_ms=1000)
    await fake.start()
    settings = Settings.from_env(bot_env(fake, bundle, workdir / "burst.db"), env_file=None)
    try:
        with fake.patch_discord():
            bot = create_bot(settings, guild_ready_timeout=0.1)
            async with running_bot(bot, fake):
                songs = await write_songs(fake, args.songs)
                voters = [make_user(f"fan{i}") for i in range(args.users)]
                rng = random.Random(0)
                plan = [Click(rng.randrange(len(songs)), rng.randrange(len(voters))) for _ in range(args.clicks)]

                started = time.perf_counter()
                sent = await dispatch(fake, songs, voters, plan, args.concurrency)
                wall = time.perf_counter() - started

                answered = [inter for inter in sent if inter.callbacks]
                latencies = [inter.callbacks[0]["elapsed"] for inter in answered]
                updates = sum(1 for inter in answered if inter.response_type == 7)
                # A (song, member) pair keeps a vote after an odd number of clicks.
                pairs = Counter((click.song, click.user) for click in plan)
                expected = [sum(n % 2 for (s, _), n in pairs.items() if s == index) for index in range(len(songs))]
                stored = [(await bot.store.get_song(song_id(m))).votes for m in songs]
                # The last answers may be followed by one refresh of the label.
                with contextlib.suppress(TimeoutError):
                    await fake.wait_until(
                        lambda: all(vote_label(m) == str(n) for m, n in zip(songs, expected, strict=True)), timeout=5
                    )
                labels = [int(vote_label(m)) for m in songs]

        print(
            f"burst: {len(plan)} vote clicks from {args.users} members on {len(songs)} songs, "
            f"at most {args.concurrency} awaiting an answer"
        )
        print(
            f"  answered {len(answered)}/{len(plan)} ({updates} by updating the message) in {wall:.2f}s "
            f"= {len(answered) / wall:.0f} clicks/s"
        )
        print(
            f"  time to the interaction callback: p50 {percentile(latencies, 0.5) * 1e3:.0f} ms, "
            f"p95 {percentile(latencies, 0.95) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms "
            f"(mean {statistics.fmean(latencies) * 1e3:.0f} ms)"
        )
        print(
            f"  database counts equal the expected toggles: {stored == expected} "
            f"({sum(stored)} votes; expected {sum(expected)})"
        )
        print(f"  vote labels show the stored counts: {labels == stored}")
        print(f"  stand-in rule violations: {len(fake.violations)} {fake.violations[:3]}")
    finally:
        await fake.stop()


# ---------------------------------------------------------------------------------------------
# 2. kill -9 in the middle of a burst


async def kill_mid_burst(args: argparse.Namespace, bundle: Path, workdir: Path) -> None:
    fake = FakeDiscord(heartbeat_interval_ms=1000)
    await fake.start()
    db = workdir / "killed.db"
    env = {
        **bot_env(fake, bundle, db),
        "LYRICS_DISCORD_API": fake.rest_base,
        "LYRICS_DISCORD_GATEWAY": fake.gateway_url,
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HOME": str(workdir),
    }  # a clean environment: no developer token or .env
    log_path = workdir / "killed-bot.log"
    try:
        with log_path.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=workdir, env=env, stdout=sink, stderr=sink
            )
            try:
                await fake.wait_ready(timeout=START_TIMEOUT)
                songs = await write_songs(fake, args.songs)
                voters = [make_user(f"fan{i}") for i in range(args.users)]
                plan = [Click(s, u) for s in range(len(songs)) for u in range(len(voters))]  # each pair once
                random.Random(1).shuffle(plan)
                kill_at = max(1, int(len(plan) * args.kill_after))
                stop = asyncio.Event()

                async def killer() -> float:
                    """SIGKILL the child once `kill_at` clicks were acknowledged; returns when, into the burst."""
                    await fake.wait_until(
                        lambda: sum(1 for i in fake.interactions.values() if i.type == 3 and i.callbacks) >= kill_at,
                        timeout=60,
                    )
                    proc.send_signal(signal.SIGKILL)
                    stop.set()
                    return time.perf_counter() - started

                started = time.perf_counter()
                killing = asyncio.create_task(killer())
                sent = await dispatch(fake, songs, voters, plan, args.concurrency, stop)
                killed_after = await killing
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        await asyncio.sleep(0.5)  # requests the child had already sent are recorded by now
    finally:
        await fake.stop()

    song_ids = {index: song_id(m) for index, m in enumerate(songs)}
    voter_ids = {index: int(v["id"]) for index, v in enumerate(voters)}
    acknowledged = set()  # (song id, user id) of every click whose answer (the updated count) reached the stand-in
    for inter in sent:
        if inter.response_type == 7:
            custom_id, user = inter.payload["data"]["custom_id"], int(inter.payload["member"]["user"]["id"])
            acknowledged.add((int(custom_id.rsplit(":", 1)[1]), user))
    with sqlite3.connect(db) as conn:  # opening it replays the WAL the killed process left
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        votes = set(conn.execute("SELECT song_id, user_id FROM votes").fetchall())
    planned = {(song_ids[c.song], voter_ids[c.user]) for c in plan}
    missing = acknowledged - votes
    print(
        f"kill -9: python -m bot got SIGKILL {killed_after:.2f}s into a burst of {len(plan)} clicks "
        f"(each song/member pair once), after {kill_at} acknowledgements; exit status {proc.returncode}"
    )
    latencies = [inter.callbacks[0]["elapsed"] for inter in sent if inter.callbacks]
    print(
        f"  clicks sent before the kill: {len(sent)}, acknowledged: {len(acknowledged)} "
        f"(time to the callback p50 {percentile(latencies, 0.5) * 1e3:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1e3:.0f} ms)"
    )
    print(f"  PRAGMA integrity_check: {', '.join(integrity)}")
    print(
        f"  votes in the database: {len(votes)}; acknowledged but missing: {len(missing)}; committed but "
        f"never acknowledged: {len(votes - acknowledged)}; not clicked at all: {len(votes - planned)}"
    )
    print(f"  every acknowledged vote survived: {not missing and integrity == ['ok']}")
    if args.keep:
        print(f"  (the child's log: {log_path})")


async def main(args: argparse.Namespace, workdir: Path) -> None:
    bundle = ensure_bundle(args.model, workdir)
    await burst(args, bundle, workdir)
    if not args.no_kill:
        await kill_mid_burst(args, bundle, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "lyrics.pt")
    parser.add_argument("--clicks", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--songs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50, help="clicks awaiting an answer at once")
    parser.add_argument(
        "--kill-after", type=float, default=0.4, help="fraction of the kill burst acknowledged before SIGKILL"
    )
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 part")
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases and logs in this folder")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if arguments.keep:
        arguments.keep.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(arguments, arguments.keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(arguments, Path(tmp)))
