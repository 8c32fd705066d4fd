"""Benchmark of the whole bot under a burst: 50 /lyrics from 10 members at once, batching on, then off.

    python bench/bench_bot.py [models/lyrics.pt] [--requests 50] [--users 10] [--length 150]

The real bot (built by `bot.client.create_bot` from settings parsed like `python -m bot` parses them)
runs against the local Discord stand-in from tests/fakediscord, on this machine's CPU. For each run it
prints how many requests got a song, p50/p95/max time from dispatch to the final message, how many
forward-pass batches the engine ran, and the worst gap between gateway heartbeats during the burst
(the event loop's health: a blocked loop sends its heartbeats late). Without a bundle at the given
path it trains a tiny one on data/sample_lyrics.txt first (figures then say little about a real model).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing

from bot.client import create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakediscord import FakeDiscord, make_user, running_bot  # noqa: E402

HEARTBEAT_MS = 250  # short, so a burst of a few seconds is sampled by many heartbeats
SEED = "窗外的麻雀"


@dataclass
class Result:
    label: str
    answered: int
    requests: int
    latencies: list[float]
    batches: int
    largest_batch: int
    worst_heartbeat_gap: float
    wall: float

    def report(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat)
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        return (
            f"{self.label:<13} answered {self.answered}/{self.requests} in {self.wall:5.2f}s | "
            f"to final message p50 {p50:5.2f}s p95 {p95:5.2f}s max {lat[-1]:5.2f}s | "
            f"{self.batches} batches (largest {self.largest_batch}) | worst heartbeat gap "
            f"{self.worst_heartbeat_gap:.3f}s (interval {HEARTBEAT_MS / 1000:.3f}s)"
        )


def ensure_bundle(path: Path, workdir: Path) -> Path:
    if path.is_file():
        return path
    from model.train import TrainConfig, train

    out = workdir / "tiny.pt"
    print(f"no bundle at {path}: training a tiny one on data/sample_lyrics.txt into {out} ...", flush=True)
    train(
        TrainConfig(
            corpus=str(REPO / "data" / "sample_lyrics.txt"), out=str(out), epochs=1, hidden=32, embed=16, device="cpu"
        )
    )
    return out


async def burst(
    label: str, bundle: Path, workdir: Path, *, batching: bool, requests: int, users: int, length: int
) -> Result:
    fake = FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS)
    await fake.start()
    env = {
        "DISCORD_TOKEN": fake.token,
        "LYRICS_MODEL": str(bundle),
        "LYRICS_DB": str(workdir / f"{label}.db"),
        "LYRICS_DEVICE": "cpu",
        "LYRICS_GUILD_IDS": fake.guild["id"],
        "LYRICS_BATCHING": "on" if batching else "off",
        # The burst is the point: lift the per-member limits so every request is accepted.
        "LYRICS_COOLDOWN": "0",
        "LYRICS_USER_IN_FLIGHT": str(requests),
        "LYRICS_MAX_IN_FLIGHT": str(requests),
    }
    settings = Settings.from_env(env, env_file=None)
    try:
        with fake.patch_discord():
            bot = create_bot(settings, guild_ready_timeout=0.1)
            async with running_bot(bot, fake):
                members = [make_user(f"fan{i}") for i in range(users)]
                await fake.wait_until(lambda: len(fake.heartbeats) >= 2, timeout=5)
                first_beat = len(fake.heartbeats) - 1
                started = time.monotonic()
                sent = await asyncio.gather(
                    *(
                        fake.send_slash_command("lyrics", {"seed": SEED, "length": length}, user=members[i % users])
                        for i in range(requests)
                    )
                )

                async def final(inter) -> float:
                    message = await inter.wait_final(timeout=600)
                    elapsed = time.monotonic() - inter.dispatched_at
                    return elapsed if message.embeds and not message.ephemeral else float("nan")

                latencies = await asyncio.gather(*(final(inter) for inter in sent))
                wall = time.monotonic() - started
                await asyncio.sleep(HEARTBEAT_MS / 1000 * 1.5)  # let the heartbeat after the burst land
                beats = fake.heartbeats[first_beat:]
                stats = bot.engine.stats
        answered = [x for x in latencies if x == x]  # NaN marks a refusal or an error
        assert not fake.violations, fake.violations
        return Result(
            label,
            len(answered),
            requests,
            answered,
            stats.batches,
            stats.largest_batch,
            max(b - a for a, b in itertools.pairwise(beats)),
            wall,
        )
    finally:
        await fake.stop()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as tmp:
        workdir = Path(tmp)
        bundle = ensure_bundle(args.bundle, workdir)
        print(f"bundle {bundle}: {args.requests} x /lyrics length {args.length} from {args.users} members at once")
        for label, batching in (("batching on", True), ("batching off", False)):
            result = await burst(
                label.replace(" ", "-"),
                bundle,
                workdir,
                batching=batching,
                requests=args.requests,
                users=args.users,
                length=args.length,
            )
            result.label = label
            print(result.report(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=REPO / "models" / "lyrics.pt")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--length", type=int, default=150)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
