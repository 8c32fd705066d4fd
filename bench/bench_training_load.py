"""How much slower /lyrics gets while /train runs beside the bot, with and without the mitigations.

    python bench/bench_training_load.py [--model models/lyrics.pt] [--corpus ../shared/data/jaychou_lyrics.txt.zip]
                                        [--songs 8] [--length 150]

The real bot runs against the local Discord stand-in (tests/fakediscord) with a COPY of the live bundle
(a finished run could otherwise replace it). For each setting it asks for `--songs` songs one after the
other while idle, starts `/train start` as an admin with the real default model configuration on the real
corpus, waits until the child is in its training loop, asks for the same songs again, then cancels.
Settings compared:
  mitigated    the bot's defaults: the child gets 1 torch thread (LYRICS_TRAIN_THREADS) and runs niced (+10)
  unmitigated  2 torch threads, normal priority: what a naive `subprocess` launch would do
It prints the song latency (dispatch to final message) idle and during training, the ratio, the worst
heartbeat gap (the event loop's health), and how fast training went meanwhile (batches per second).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing

from bot.client import LyricsBot, create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakediscord import FakeDiscord, make_user, running_bot  # noqa: E402

HEARTBEAT_MS = 250
SEED = "窗外的麻雀"
ADMINISTRATOR = 1 << 3


@dataclass
class Phase:
    latencies: list[float]
    heartbeat_gap: float
    steps_per_s: float | None = None

    def describe(self) -> str:
        lat = self.latencies
        text = (
            f"p50 {statistics.median(lat):5.2f}s mean {statistics.fmean(lat):5.2f}s max {max(lat):5.2f}s "
            f"| worst heartbeat gap {self.heartbeat_gap:.2f}s"
        )
        if self.steps_per_s is not None:
            text += f" | training {self.steps_per_s:.2f} batches/s"
        return text


async def songs(fake: FakeDiscord, count: int, length: int) -> list[float]:
    """Ask for `count` songs one after the other; the time from dispatch to each final message."""
    latencies = []
    for i in range(count):
        started = time.monotonic()
        # A new member each time: the per-member bound would refuse a song asked for as the last one is shown.
        inter = await fake.send_slash_command("lyrics", {"seed": SEED, "length": length}, user=make_user(f"fan{i}"))
        message = await inter.wait_final(timeout=120)
        assert message is not None and not message.ephemeral, message and message.content
        latencies.append(time.monotonic() - started)
    return latencies


async def measure(fake: FakeDiscord, count: int, length: int, steps: callable | None = None) -> Phase:
    first_beat = len(fake.heartbeats)
    first_step, started = (steps() if steps else 0), time.monotonic()
    latencies = await songs(fake, count, length)
    beats = fake.heartbeats[max(0, first_beat - 1) :]
    gap = max((b - a for a, b in itertools.pairwise(beats)), default=0.0)
    rate = (steps() - first_step) / (time.monotonic() - started) if steps else None
    return Phase(latencies, gap, rate)


async def scenario(
    label: str, model: Path, corpus: Path, workdir: Path, *, threads: int, nice: int, count: int, length: int
) -> None:
    folder = workdir / label
    folder.mkdir()
    live = folder / "lyrics.pt"
    shutil.copy(model, live)
    env = {
        "DISCORD_TOKEN": "fake-bot-token",
        "LYRICS_MODEL": str(live),
        "LYRICS_DB": str(folder / "lyrics.db"),
        "LYRICS_CORPUS": str(corpus),
        "LYRICS_DEVICE": "cpu",
        "LYRICS_COOLDOWN": "0",
        "LYRICS_TRAIN_THREADS": str(threads),
        "LYRICS_TRAIN_UPDATE_INTERVAL": "5",
    }
    fake = FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS)
    await fake.start()
    try:
        with fake.patch_discord():
            settings = Settings.from_env({**env, "LYRICS_GUILD_IDS": fake.guild["id"]}, env_file=None)
            bot: LyricsBot = create_bot(settings, guild_ready_timeout=0.1)
            async with running_bot(bot, fake):
                training = bot.get_cog("Training")
                training.jobs.nice = nice
                await songs(fake, 1, length)  # warm-up: first batch, allocator
                idle = await measure(fake, count, length)

                await fake.send_slash_command("train start", {"epochs": 1}, permissions=ADMINISTRATOR)
                while training.run is None:
                    await asyncio.sleep(0.1)
                status = training.run.job.status
                began = time.monotonic()
                while status.step < 3:  # past corpus preparation: in the training loop proper
                    if training.run.job.done:
                        raise RuntimeError(f"training ended early: {status.error} {status.stderr_tail[-3:]}")
                    await asyncio.sleep(0.2)
                prep = time.monotonic() - began
                step_count = lambda: status.epoch * status.steps + status.step  # noqa: E731
                busy = await measure(fake, count, length, steps=step_count)
                still_training = status.state == "running"
                cancel = await fake.send_slash_command("train cancel", permissions=ADMINISTRATOR)
                await cancel.wait_final(timeout=30, until=lambda i: "cancelled" in (i.content or ""))
    finally:
        await fake.stop()
    print(f"{label} (child: {threads} torch thread(s), nice +{nice}); corpus preparation took {prep:.0f}s")
    print(f"  idle            {idle.describe()}")
    print(f"  while training  {busy.describe()}" + ("" if still_training else "  (training ended during it!)"))
    print(
        f"  slowdown        x{statistics.median(busy.latencies) / statistics.median(idle.latencies):.2f} (p50), "
        f"x{statistics.fmean(busy.latencies) / statistics.fmean(idle.latencies):.2f} (mean)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "lyrics.pt")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip")
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--only", choices=["mitigated", "unmitigated"])
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"no bundle at {args.model}: train one first (python -m model train --corpus {args.corpus})")
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        for label, threads, nice in (("mitigated", 1, 10), ("unmitigated", 2, 0)):
            if args.only in (None, label):
                await scenario(
                    label,
                    args.model,
                    args.corpus,
                    Path(tmp),
                    threads=threads,
                    nice=nice,
                    count=args.songs,
                    length=args.length,
                )


if __name__ == "__main__":
    asyncio.run(main())
