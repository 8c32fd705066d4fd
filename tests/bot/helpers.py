"""Helpers shared by the bot's tests: environments, what every test expects of the bot, songs and their buttons."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.jobs import JobEnded, TrainingJob
from model.checkpoint import Bundle
from model.events import Event
from model.mixture import Mixture
from model.sample import Sample, SampleRequest, SamplingError
from tests.fakediscord import FakeDiscord, Interaction, SentMessage, make_user
from tests.fakediscord.rules import walk_components
from tests.helpers import SAMPLE_CORPUS

NO_MENTIONS = {"parse": []}  # discord.AllowedMentions.none() as it goes over the wire
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEED = "窗外的麻雀"
VOTE_ID = re.compile(r"song:vote:(?P<id>\d+)")


def bot_env(tmp_path: Path, **overrides: Any) -> dict[str, str]:
    """Environment variables for a bot whose files live in `tmp_path`; `overrides` add or replace (None removes)."""
    env = {
        "DISCORD_TOKEN": "fake-bot-token",
        "LYRICS_MODEL": str(tmp_path / "missing.pt"),
        "LYRICS_DB": str(tmp_path / "lyrics.db"),
        "LYRICS_CORPUS": str(SAMPLE_CORPUS),
        "LYRICS_CORPORA": str(tmp_path / "corpora"),  # never the checkout's data/corpora
        "LYRICS_DEVICE": "cpu",
        "LYRICS_TORCH_THREADS": "1",  # two shared cores: one for torch, one for the event loop and the fake
        "LYRICS_ATTACHMENT_HOSTS": "127.0.0.1",  # the stand-in serves attachments on loopback
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def assert_well_behaved(fake: FakeDiscord) -> None:
    """What every test expects of the bot, whatever it tested."""
    assert fake.violations == []
    assert fake.unknown_routes == []
    assert fake.allowed_mentions, "the bot sent no message"
    # No call passes allowed_mentions: the client's default (none) must reach Discord on every message.
    assert all(mentions == NO_MENTIONS for mentions in fake.allowed_mentions), fake.allowed_mentions


# ---------------------------------------------------------------------------------------------
# songs and their buttons


async def write_song(fake: FakeDiscord, *, user: dict[str, Any] | None = None, **options: Any) -> SentMessage:
    """/lyrics through the fake; returns the (public) reply."""
    inter = await fake.send_slash_command("lyrics", {"seed": SEED, "length": 10, **options}, user=user)
    message = await inter.wait_final(timeout=30)
    assert message is not None and not message.ephemeral, message
    return message


def song_id(message: SentMessage) -> int:
    """The song a message's buttons are about."""
    [found] = [int(m["id"]) for cid in message.custom_ids() if (m := VOTE_ID.fullmatch(cid))]
    return found


def component(message: SentMessage, custom_id: str) -> dict[str, Any]:
    return next(c for c in walk_components(message.components) if c.get("custom_id") == custom_id)


def vote_label(message: SentMessage) -> str:
    return component(message, f"song:vote:{song_id(message)}")["label"]


async def click(
    fake: FakeDiscord, message: SentMessage, action: str, user: dict[str, Any], *, permissions: Any = None
) -> Interaction:
    """`user` clicks a song button on `message`; returns once the bot has answered."""
    inter = await fake.click_button(message, f"song:{action}:{song_id(message)}", user=user, permissions=permissions)
    await inter.wait_response()
    return inter


async def ephemeral_text(inter: Interaction) -> str:
    """The text of an interaction's ephemeral answer (type 4)."""
    message = await inter.wait_final()
    assert inter.response_type == 4 and message is not None and message.ephemeral, inter
    return message.content


def bob() -> dict[str, Any]:
    return make_user("bob")


# ---------------------------------------------------------------------------------------------
# models, stand-in samplers (for `Engine(loader=...)`, the engine's seam for tests) and training jobs


def standin_bundle(sha256: str, **metrics: float) -> Bundle:
    """A Bundle with no network, for the engine's tests: its hash and metrics are all the engine reads."""
    return Bundle(
        net=None,
        vocab=[],
        train_ids=[],
        mixture=Mixture(),
        metrics=dict(metrics),  # type: ignore[arg-type]
        history=[],
        train_config={},
        corpus_sha256="",
        created_at="",
        sha256=sha256,
    )


class Abort(BaseException):
    """Not an Exception: what a crash deeper than a bad request looks like to the batcher (it is not caught)."""


class StandInSampler:
    """Writes "<name>:<seed>"; refuses the seed "bad" and aborts on "abort"; can be held inside a batch with `gate`."""

    def __init__(self, name: str, *, hold: bool = False, delay: float = 0.0, bpc: float = 1.0) -> None:
        self.bundle = standin_bundle(name, bpc=bpc)
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.delay = delay

    def generate(self, request: SampleRequest) -> Sample:
        return self.generate_many([request])[0]

    def generate_many(self, requests: list[SampleRequest]) -> list[Sample]:
        self.batches.append([r.seed for r in requests])
        self.started.set()
        self.gate.wait(10)
        time.sleep(self.delay)
        return self.write(requests)

    def write(self, requests: list[SampleRequest]) -> list[Sample]:
        if any(r.seed == "bad" for r in requests):
            raise SamplingError("the seed 'bad' is not allowed")
        if any(r.seed == "abort" for r in requests):
            raise Abort("the batch aborted")
        return [Sample(text=f"{self.bundle.sha256}:{r.seed}", request=r) for r in requests]


class SteppedSampler(StandInSampler):
    """Each batch waits for one `step()` of the test before it finishes."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.permits = threading.Semaphore(0)

    def step(self) -> None:
        self.permits.release()

    def generate_many(self, requests: list[SampleRequest]) -> list[Sample]:
        self.batches.append([r.seed for r in requests])
        # Long enough for any test to step it (a busy machine is slow); a test that fails first still ends.
        if not self.permits.acquire(timeout=30):
            raise TimeoutError("the test never stepped this batch")
        return self.write(requests)


def gone(pid: int) -> bool:
    """Whether no process has this id any more (reaped, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def job_events(job: TrainingJob) -> AsyncIterator[Event | JobEnded]:
    """Every later event of `job`, through its listener hook, until (and including) JobEnded."""
    queue: asyncio.Queue[Event | JobEnded] = asyncio.Queue()
    job.add_listener(queue.put_nowait)
    try:
        if job.done:
            return
        while True:
            event = await queue.get()
            yield event
            if isinstance(event, JobEnded):
                return
    finally:
        job.remove_listener(queue.put_nowait)
