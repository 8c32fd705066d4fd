"""Benchmark of the whole bot under a burst: N different members type /lyrics at once (default 50, then 200).

    python bench/bench_bot.py [models/lyrics.pt] [--members 50,200] [--length 150] [--unbatched] [--max-batch N]
                           [--threads N]

The real bot (built by `bot.client.create_bot` from settings parsed like `python -m bot` parses them, with
its default limits: one song per member, a queue of LYRICS_MAX_QUEUE=500, batches of 64) runs against the
local Discord stand-in from tests/fakediscord, on this machine's CPU. For each burst it prints how many
members got a song and how many were refused, p50/p95/max time from dispatch to the final message, how
many saw their place in the queue (and the longest wait in places), the engine's batches and how long one
took, and the worst gap between gateway heartbeats during the burst (the event loop's health: a blocked
loop sends its heartbeats late) and when it began. The stand-in shares the bot's event loop, so its own
work (200 interactions sent at once) is in those gaps too. Without a bundle at the given path it trains a tiny one on
data/sample_lyrics.txt first (figures then say little about a real model).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing

from bot.client import create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from model.sample import SampleRequest  # noqa: E402
from tests.fakediscord import FakeDiscord, make_user, running_bot  # noqa: E402

HEARTBEAT_MS = 250  # short, so a burst of a few seconds is sampled by many heartbeats
SEED = "窗外的麻雀"
PLACE = re.compile(r"排队中 · #(\d+) in the queue")


@dataclass
class Result:
    label: str
    members: int
    answered: list[float]  # seconds from dispatch to the song, per member who got one
    refused: int
    failed: int
    waited: int  # members who saw their place in the queue
    furthest_place: int
    place_edits: int
    batches: int
    largest_batch: int
    seconds_per_batch: float
    longest_queue: int
    worst_heartbeat_gap: float
    worst_gap_at: float  # seconds after the burst was sent that the worst gap began
    wall: float

    def report(self) -> str:
        lat = sorted(self.answered) or [float("nan")]
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        return (
            f"{self.label}: {len(self.answered)}/{self.members} got songs, {self.refused} refused, "
            f"{self.failed} failed, all done in {self.wall:.2f}s\n"
            f"  to final message: p50 {statistics.median(lat):.2f}s  p95 {p95:.2f}s  max {lat[-1]:.2f}s\n"
            f"  queue: {self.waited} saw their place (furthest #{self.furthest_place}, {self.place_edits} place "
            f"edits); longest queue {self.longest_queue}\n"
            f"  engine: {self.batches} batches (largest {self.largest_batch}), {self.seconds_per_batch:.2f}s per "
            f"batch on average\n"
            f"  worst heartbeat gap {self.worst_heartbeat_gap:.3f}s (interval {HEARTBEAT_MS / 1000:.3f}s), "
            f"starting {self.worst_gap_at:+.2f}s after the burst was sent"
        )


def ensure_bundle(path: Path, workdir: Path) -> Path:
    if path.is_file():
        return path
    from model.config import TrainConfig
    from model.train import train

    out = workdir / "tiny.pt"
    print(f"no bundle at {path}: training a tiny one on data/sample_lyrics.txt into {out} ...", flush=True)
    train(
        TrainConfig(
            corpus=str(REPO / "data" / "sample_lyrics.txt"), out=str(out), epochs=1, hidden=32, embed=16, device="cpu"
        )
    )
    return out


async def burst(
    bundle: Path,
    workdir: Path,
    *,
    members: int,
    length: int,
    batching: bool,
    max_batch: int | None = None,
    threads: int | None = None,
) -> Result:
    label = f"{members} members at once" + ("" if batching else " (batching off)")
    fake = FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS)
    await fake.start()
    env = {
        "DISCORD_TOKEN": fake.token,
        "LYRICS_MODEL": str(bundle),
        "LYRICS_DB": str(workdir / f"burst-{members}-{batching}.db"),
        "LYRICS_DEVICE": "cpu",
        "LYRICS_GUILD_IDS": fake.guild["id"],
        "LYRICS_BATCHING": "on" if batching else "off",
        **({"LYRICS_MAX_BATCH": str(max_batch)} if max_batch else {}),
        **({"LYRICS_TORCH_THREADS": str(threads)} if threads else {}),
    }
    settings = Settings.from_env(env, env_file=None)  # every other limit at its default
    try:
        with fake.patch_discord():
            bot = create_bot(settings, guild_ready_timeout=0.1)
            async with running_bot(bot, fake):
                await bot.engine.generate(SampleRequest(seed=SEED, length=length))  # warm up, as a live bot is
                fans = [make_user(f"fan{i}") for i in range(members)]
                await fake.wait_until(lambda: len(fake.heartbeats) >= 2, timeout=5)
                first_beat = len(fake.heartbeats) - 1
                started = time.monotonic()
                sent = await asyncio.gather(
                    *(fake.send_slash_command("lyrics", {"seed": SEED, "length": length}, user=fan) for fan in fans)
                )

                async def final(inter) -> tuple[str, float]:
                    message = await inter.wait_final(
                        timeout=900,
                        until=lambda i: i.embeds or i.ephemeral or not (i.content and PLACE.search(i.content)),
                    )
                    elapsed = time.monotonic() - inter.dispatched_at
                    if message.embeds:
                        return "song", elapsed
                    return ("refused" if message.ephemeral else "failed"), elapsed

                outcomes = await asyncio.gather(*(final(inter) for inter in sent))
                wall = time.monotonic() - started
                await asyncio.sleep(HEARTBEAT_MS / 1000 * 1.5)  # let the heartbeat after the burst land
                beats = fake.heartbeats[first_beat:]
                stats = bot.engine.stats
        assert not fake.violations, fake.violations
        places = [
            [int(found[1]) for edit in inter.edits if (found := PLACE.search(edit.get("content") or ""))]
            for inter in sent
        ]
        burst_batches = stats.batches - 1  # less the warm-up
        gap, gap_at = max((b - a, a - started) for a, b in itertools.pairwise(beats))
        return Result(
            label=label,
            members=members,
            answered=[seconds for kind, seconds in outcomes if kind == "song"],
            refused=sum(kind == "refused" for kind, _ in outcomes),
            failed=sum(kind == "failed" for kind, _ in outcomes),
            waited=sum(bool(seen) for seen in places),
            furthest_place=max((max(seen) for seen in places if seen), default=0),
            place_edits=sum(len(seen) for seen in places),
            batches=burst_batches,
            largest_batch=stats.largest_batch,
            seconds_per_batch=stats.batch_seconds / max(1, stats.batches),
            longest_queue=stats.longest_queue,
            worst_heartbeat_gap=gap,
            worst_gap_at=gap_at,
            wall=wall,
        )
    finally:
        await fake.stop()


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as tmp:
        workdir = Path(tmp)
        bundle = ensure_bundle(args.bundle, workdir)
        defaults = SampleRequest()
        print(
            f"commit {commit()}, bundle {bundle}: /lyrics length {args.length}, the sampler's defaults "
            f"(candidates {defaults.candidates}, rhyme {defaults.rhyme!r}, no_copy {defaults.no_copy})",
            flush=True,
        )
        for members in args.members:
            for batching in (True, False) if args.unbatched else (True,):
                result = await burst(
                    bundle,
                    workdir,
                    members=members,
                    length=args.length,
                    batching=batching,
                    max_batch=args.max_batch,
                    threads=args.threads,
                )
                print(result.report(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=REPO / "models" / "lyrics.pt")
    parser.add_argument(
        "--members", type=lambda text: [int(n) for n in text.split(",")], default=[50, 200], help="e.g. 50,200"
    )
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--unbatched", action="store_true", help="also run each burst with batching off")
    parser.add_argument("--threads", type=int, default=None, help="LYRICS_TORCH_THREADS (default: the bot's)")
    parser.add_argument("--max-batch", type=int, default=None, help="LYRICS_MAX_BATCH (default: the bot's, 64)")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
