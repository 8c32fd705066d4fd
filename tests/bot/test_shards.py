"""The bot as shards: two LyricsBots (as two processes would run them) on the Discord stand-in, which routes each
guild to shard (guild_id >> 22) % 2.

The first tests run both bots in this process on one SQLite file, to show what each shard does with a command,
a button and /train or /corpus quickly. The last one is the real thing: two `python -m bot` processes, shards 0
and 1 of 2, on one PostgreSQL database; a song written through shard 0 is voted on through shard 1, and a model
trained by the trainer process (shard 0), started from shard 1's guild, reaches both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot import i18n
from bot.client import create_bot
from bot.relay import relay_key, seal
from bot.settings import Settings
from bot.store import TrainerTakenError
from tests.bot.exts.test_training import ADMINISTRATOR
from tests.bot.helpers import SEED, assert_well_behaved, bot_env, song_id, vote_label
from tests.fakediscord import FakeDiscord, SentMessage, make_guild, make_user, running_bot, snowflake_on_shard
from tests.fakediscord.fixtures import TEST_HEARTBEAT_MS
from tests.fakediscord.payloads import make_interaction
from tests.helpers import REPO

INTERNAL_ERROR = i18n.text("en", "errors.internal")
OWNER_ONLY = i18n.text("en", "errors.owner_only")
TRAINER_AWAY = i18n.text("en", "errors.trainer_away")
TRAINER_LATE = i18n.text("en", "errors.trainer_late")
TRAINER_LOST = i18n.text("en", "errors.trainer_lost")

TINY_TRAINING = "--hidden 32 --embed 16 --batch-size 8 --seq-len 16 --min-count 2 --seed 1 --judge-songs 0"
START_TIMEOUT = 120  # two bot processes importing torch at once on two busy cores


@pytest.fixture
async def sharded_discord() -> AsyncIterator[FakeDiscord]:
    """The stand-in with two guilds: "zero" on shard 0 of 2, "one" on shard 1."""
    owner, alice = make_user("owner"), make_user("alice")
    guilds = [
        make_guild("zero", id=snowflake_on_shard(0, 2), members=[owner, alice], owner=owner),
        make_guild("one", id=snowflake_on_shard(1, 2), members=[owner, alice], owner=owner),
    ]
    fake = FakeDiscord(guilds, heartbeat_interval_ms=TEST_HEARTBEAT_MS)
    fake.owner, fake.user = owner, alice  # the application's owner, and who runs commands by default
    await fake.start()
    try:
        with fake.patch_discord():
            yield fake
    finally:
        await fake.stop()


def guild_ids(fake: FakeDiscord) -> str:
    return ",".join(g["id"] for g in fake.guilds)


@contextlib.asynccontextmanager
async def two_shards(fake: FakeDiscord, tiny_bundle: Path, tmp_path: Path, **overrides: Any):
    """Shard 0 (the trainer) and shard 1 as two bots in this process, sharing tmp_path's files."""
    common = {
        "LYRICS_MODEL": tiny_bundle,
        "LYRICS_GUILD_IDS": guild_ids(fake),
        "LYRICS_COOLDOWN": 0,
        "LYRICS_SHARD_COUNT": 2,
        **overrides,
    }
    bots = []
    for shard, trainer in ((0, 1), (1, 0)):
        env = bot_env(tmp_path, **{"LYRICS_SHARD_IDS": shard, "LYRICS_TRAINER": trainer, **common})
        bots.append(create_bot(Settings.from_env(env, env_file=None), guild_ready_timeout=0.1))
    async with running_bot(bots[0], fake), running_bot(bots[1], fake):
        await fake.wait_ready(shards=[0, 1])
        yield bots


async def write_song(fake: FakeDiscord, guild: dict[str, Any], *, user: dict[str, Any] | None = None) -> SentMessage:
    inter = await fake.send_slash_command("lyrics", {"seed": SEED, "length": 10}, guild_id=guild["id"], user=user)
    message = await inter.wait_final(timeout=30)
    assert message is not None and not message.ephemeral, message
    return message


async def test_without_settings_the_bot_runs_discords_recommended_shards(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path
) -> None:
    fake = sharded_discord
    fake.recommended_shards = 2
    env = bot_env(tmp_path, LYRICS_MODEL=tiny_bundle, LYRICS_GUILD_IDS=guild_ids(fake), LYRICS_COOLDOWN=0)
    bot = create_bot(Settings.from_env(env, env_file=None), guild_ready_timeout=0.1)
    # discord.py waits 5 s before each IDENTIFY after the first (Discord's rate limit).
    async with running_bot(bot, fake, timeout=20):
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert sorted(tuple(i["shard"]) for i in fake.identifies) == [(0, 2), (1, 2)]
        assert bot.relay_sender is None and bot.relay_receiver is None and bot.watcher is None  # one process
        for guild in fake.guilds:
            song = await write_song(fake, guild)
            assert (await bot.store.get_song(song_id(song))).guild_id == int(guild["id"])
        assert [i.shard for i in fake.interactions.values()] == [0, 1]
    assert_well_behaved(fake)


async def test_each_shard_serves_its_guilds_and_a_button_works_on_either(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path
) -> None:
    fake = sharded_discord
    zero, one = fake.guilds
    async with two_shards(fake, tiny_bundle, tmp_path) as (first, second):
        assert [g.name for g in first.guilds] == ["zero"] and [g.name for g in second.guilds] == ["one"]
        assert first.relay_receiver is not None and first.watcher is None  # the trainer
        assert second.relay_sender is not None and second.watcher is not None  # follows the trainer
        in_zero, in_one = await write_song(fake, zero), await write_song(fake, one)
        assert [i.shard for i in fake.interactions.values()] == [0, 1]

        voter = make_user("bob")
        click = await fake.click_button(in_zero, f"song:vote:{song_id(in_zero)}", user=voter, shard=1)
        assert (await click.wait_response())["type"] == 7 and vote_label(in_zero) == "1"
        click = await fake.click_button(in_zero, f"song:vote:{song_id(in_zero)}", user=voter, shard=0)
        assert (await click.wait_response())["type"] == 7 and vote_label(in_zero) == "0"
        assert (await second.store.get_song(song_id(in_one))).guild_id == int(one["id"])
    assert_well_behaved(fake)


async def test_a_second_trainer_is_refused(sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path) -> None:
    fake = sharded_discord
    async with two_shards(fake, tiny_bundle, tmp_path):  # shard 0 trains
        env = bot_env(tmp_path, LYRICS_MODEL=tiny_bundle, LYRICS_SHARD_COUNT=2, LYRICS_SHARD_IDS=1, LYRICS_TRAINER=1)
        second = create_bot(Settings.from_env(env, env_file=None))
        with pytest.raises(TrainerTakenError, match="set LYRICS_TRAINER=0"):
            async with second:  # as python -m bot runs it: closed on the way out
                await second.login(fake.token)
        assert second.is_closed()


async def test_train_and_corpus_go_to_the_trainer_whichever_shard_receives_them(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path
) -> None:
    fake = sharded_discord
    zero, one = fake.guilds
    async with two_shards(fake, tiny_bundle, tmp_path, LYRICS_ADMIN_IDS=fake.owner["id"]) as (trainer, shard):
        status = await fake.send_slash_command("train status", guild_id=one["id"], user=fake.owner)
        assert status.shard == 1
        answer = await status.wait_final(timeout=5)
        assert answer.ephemeral and answer.content.startswith("Idle: no training job"), answer.content
        assert status.callbacks[0]["elapsed"] < 3
        assert (shard.relay_sender.handed_over, trainer.relay_receiver.received) == (1, 1)

        (tmp_path / "corpora").mkdir()
        (tmp_path / "corpora" / "晴天.txt").write_text("故事的小黄花\n", encoding="utf-8")
        for guild in (zero, one):  # shard 0 is the trainer itself; shard 1 hands it over
            names = await fake.send_autocomplete(
                "corpus remove", {"name": "晴"}, "name", user=fake.owner, guild_id=guild["id"]
            )
            assert (await names.wait_response())["data"]["choices"] == [{"name": "晴天.txt", "value": "晴天.txt"}]
        assert (shard.relay_sender.handed_over, trainer.relay_receiver.received) == (2, 2)

        # Owners only, checked on our side by the process that runs the command.
        refused = await fake.send_slash_command("train start", guild_id=one["id"], user=fake.user)
        assert (await refused.wait_final(timeout=5)).content == OWNER_ONLY
        assert trainer.get_cog("Training").run is None

        # The trainer process is away: the shard that received it says so, within Discord's 3 s.
        await trainer.relay_receiver.stop()
        away = await fake.send_slash_command("corpus list", guild_id=one["id"], user=fake.owner)
        assert (await away.wait_final(timeout=5)).content == TRAINER_AWAY
        assert 1.0 < away.callbacks[0]["elapsed"] < 3
        assert shard.relay_sender.taken_back == 1
        lyrics = await fake.send_slash_command("lyrics", {"seed": SEED, "length": 5}, guild_id=one["id"])
        assert (await lyrics.wait_final(timeout=30)).embeds  # everything else is the shard's own

        await shard.store.close()  # the shard's database is gone: the member still gets an answer
        broken = await fake.send_slash_command("train status", guild_id=one["id"], user=fake.owner)
        assert (await broken.wait_final(timeout=5)).content == INTERNAL_ERROR
    assert_well_behaved(fake)


# ---------------------------------------------------------------------------------------------
# two processes, one PostgreSQL database


def process_env(fake: FakeDiscord, tmp_path: Path, **overrides: Any) -> dict[str, str]:
    env = bot_env(
        tmp_path,
        DISCORD_TOKEN=fake.token,
        LYRICS_DISCORD_API=fake.rest_base,
        LYRICS_DISCORD_GATEWAY=fake.gateway_url,
        LYRICS_GUILD_IDS=guild_ids(fake),
        LYRICS_ADMIN_IDS=fake.owner["id"],
        LYRICS_COOLDOWN=0,
        LYRICS_SHARD_COUNT=2,
        LYRICS_TRAIN_ARGS=TINY_TRAINING,
        LYRICS_TRAIN_UPDATE_INTERVAL=0.5,
        LYRICS_MODEL_POLL=0.2,
        PATH=os.environ.get("PATH", ""),
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        HOME=str(tmp_path),
        **overrides,
    )
    return env


@contextlib.asynccontextmanager
async def bot_process(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=log.parent, env=env, stdout=sink, stderr=sink
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def stored_hash(url: str, message: SentMessage) -> str:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT bundle_hash FROM songs WHERE message_id = $1", int(message.id))
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_processes_share_postgres_votes_and_the_trained_model(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path, postgres_url: str
) -> None:
    fake = sharded_discord
    zero, one = fake.guilds
    model = tmp_path / "models" / "lyrics.pt"
    model.parent.mkdir()
    shutil.copy(tiny_bundle, model)
    first_hash = hashlib.sha256(model.read_bytes()).hexdigest()
    env = process_env(fake, tmp_path, LYRICS_MODEL=model, LYRICS_DATABASE_URL=postgres_url)
    logs = tmp_path / "shard0.log", tmp_path / "shard1.log"
    async with (
        bot_process({**env, "LYRICS_SHARD_IDS": "0", "LYRICS_TRAINER": "1"}, logs[0]) as trainer,
        bot_process({**env, "LYRICS_SHARD_IDS": "1"}, logs[1]) as follower,
    ):

        def output() -> str:
            return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)

        try:
            await fake.wait_ready(timeout=START_TIMEOUT, shards=[0, 1])

            # A song written through shard 0, voted on through shard 1 (and by one member through both).
            song = await write_song(fake, zero)
            sid = song_id(song)
            bob, carol = make_user("bob"), make_user("carol")
            vote = await fake.click_button(song, f"song:vote:{sid}", user=bob, shard=1)
            assert vote.shard == 1 and (await vote.wait_response(timeout=10))["type"] == 7
            assert vote_label(song) == "1"
            clicks = await asyncio.gather(
                *(fake.click_button(song, f"song:vote:{sid}", user=carol, shard=n % 2) for n in range(5))
            )
            assert {c.shard for c in clicks} == {0, 1}
            answers = await asyncio.gather(*(c.wait_response(timeout=10) for c in clicks))
            assert all(a["type"] == 7 and a["elapsed"] < 3 for a in answers)
            votes = await asyncpg.connect(postgres_url)
            try:  # Bob's vote, and Carol's fifth click: each click toggled once, whichever process took it
                assert await votes.fetchval("SELECT COUNT(*) FROM votes WHERE song_id = $1", sid) == 2
            finally:
                await votes.close()
            await fake.wait_until(lambda: vote_label(song) == "2", timeout=10, what="the label shows 2 votes")

            # Clicks on two shards whose edits land out of order: Carol's (through shard 0) reaches Discord
            # first but is applied after Bob's later one (through shard 1), so it briefly shows a stale count.
            # No process saw the two overlap; the label must still end up right.
            fake.ack_deadline = 30.0  # the callback arrives in time; only its effect is late
            release = fake.hold("POST", r"/interactions/\d+/[^/]+/callback$", times=1)
            held = fake.faults[-1]
            late = await fake.click_button(song, f"song:vote:{sid}", user=carol, shard=0)
            while held.hits == 0:  # Carol's vote is counted (1 left), and her answer waits at the door
                await asyncio.sleep(0.05)
            prompt = await fake.click_button(song, f"song:vote:{sid}", user=bob, shard=1)
            assert (await prompt.wait_response(timeout=10))["type"] == 7 and vote_label(song) == "0"
            release.set()
            assert (await late.wait_response(timeout=10))["type"] == 7
            await fake.wait_until(lambda: vote_label(song) == "0", timeout=10, what="the late click's label fixed")

            # Training started from shard 1's guild runs in the trainer (shard 0), and its model reaches both.
            start = await fake.send_slash_command(
                "train start", {"epochs": 1, "force": True}, guild_id=one["id"], user=fake.owner
            )
            # Deferred by the trainer before it starts anything (bot/relay.py), then the progress message.
            assert start.shard == 1 and (await start.wait_response(timeout=10))["type"] == 5
            await fake.wait_until(
                lambda: model.is_file() and hashlib.sha256(model.read_bytes()).hexdigest() != first_hash,
                timeout=180,
                what="the trained model promoted",
            )
            new_hash = hashlib.sha256(model.read_bytes()).hexdigest()
            await start.wait_final(timeout=30, until=lambda i: "now live" in (i.content or ""))
            for guild in (zero, one):
                deadline = time.monotonic() + 30
                while True:  # the follower picks the new file up within a few polls
                    reply = await write_song(fake, guild)
                    if await stored_hash(postgres_url, reply) == new_hash:
                        break
                    assert time.monotonic() < deadline, f"guild {guild['name']} never got the new model"
                    await asyncio.sleep(0.3)
        except BaseException:
            print(output())
            raise
        assert trainer.returncode is None and follower.returncode is None, output()
    assert "a new model reached this process" in logs[1].read_text()
    assert "a new model reached this process" not in logs[0].read_text()  # the trainer promoted it itself
    assert fake.violations == [] and fake.unknown_routes == []


# ---------------------------------------------------------------------------------------------
# the relay's trust boundary, a late sender, and the trainer's claim


def forged_train_start(fake: FakeDiscord, guild: dict[str, Any]) -> dict[str, Any]:
    """What someone who can write to the database might leave: an owner's /train start force:true that Discord
    never sent (its token is made up)."""
    data = fake._command_data("train start", {"epochs": 1, "force": True}, None, guild)
    return make_interaction(
        type=2,
        application_id=fake.application_id,
        data=data,
        user=fake.owner,
        channel=guild["channels"][0],
        guild=guild,
        permissions=ADMINISTRATOR,
    )


async def test_a_forged_relay_row_does_nothing(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = sharded_discord
    one = fake.guilds[1]
    async with two_shards(fake, tiny_bundle, tmp_path, LYRICS_ADMIN_IDS=fake.owner["id"]) as (trainer, shard):
        receiver, training = trainer.relay_receiver, trainer.get_cog("Training")
        forged = forged_train_start(fake, one)
        # Unsealed (as rows were before 2026-12), sealed with another key, and for another application.
        other_app = {**forged, "application_id": "1234"}
        await shard.store.coordinator.relay_post(json.dumps(forged))
        await shard.store.coordinator.relay_post(seal(forged, relay_key("not-the-bot-token")))
        await shard.store.coordinator.relay_post(seal(other_app, relay_key(fake.token)))
        await fake.wait_until(lambda: receiver.dropped == 3, timeout=5, what="the forged rows dropped")
        assert receiver.received == 0 and training.run is None
        assert sum("seal does not match" in r.getMessage() for r in caplog.records) == 2
        assert sum("another application" in r.getMessage() for r in caplog.records) == 1

        # Sealed right (a process with the token left it) but never sent by Discord: the defer that comes
        # before anything else fails, and nothing runs.
        await shard.store.coordinator.relay_post(seal(forged_train_start(fake, one), relay_key(fake.token)))
        await fake.wait_until(lambda: receiver.received == 1, timeout=5, what="the sealed row taken")
        await fake.wait_until(lambda: fake.violations, timeout=5, what="the defer of the made-up token")
        await asyncio.sleep(0.5)
        assert training.run is None and [v.rule for v in fake.violations] == ["unknown-interaction"]
        fake.violations.clear()  # the one call the forgery costs: refused by Discord

        real = await fake.send_slash_command("train status", guild_id=one["id"], user=fake.owner)
        assert (await real.wait_final(timeout=5)).content.startswith("Idle: no training job")
        assert real.response_type == 5 and real.callbacks[0]["elapsed"] < 3  # deferred by the trainer, at once
    assert_well_behaved(fake)


async def test_a_command_the_trainer_found_too_old_is_answered_by_its_late_sender(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path
) -> None:
    fake = sharded_discord
    one = fake.guilds[1]
    async with two_shards(fake, tiny_bundle, tmp_path, LYRICS_ADMIN_IDS=fake.owner["id"]) as (trainer, shard):
        receiver = trainer.relay_receiver
        await receiver.stop()  # the trainer is slow to look...
        receiver.max_age_s = 0.5
        late = await fake.send_slash_command("train status", guild_id=one["id"], user=fake.owner)
        await asyncio.sleep(1.0)
        receiver.start()  # ...and finds the command older than it may run (the sender takes it back at 1.5 s)
        assert (await late.wait_final(timeout=5)).content == TRAINER_LATE
        assert (shard.relay_sender.expired, shard.relay_sender.taken_back, receiver.received) == (1, 0, 0)
    assert_well_behaved(fake)


@pytest.mark.postgres
async def test_a_trainer_that_loses_its_claim_refuses_train_and_stops_relaying(
    sharded_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path, postgres_url: str
) -> None:
    fake = sharded_discord
    zero, one = fake.guilds
    env = {"LYRICS_ADMIN_IDS": fake.owner["id"], "LYRICS_DATABASE_URL": postgres_url, "LYRICS_TRAINER_LEASE": 1.5}
    async with two_shards(fake, tiny_bundle, tmp_path, **env) as (trainer, _):
        admin = await asyncpg.connect(postgres_url)
        try:  # the database server restarts, an idle timeout or a NAT drops the trainer's connection
            assert await admin.fetchval(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'lyrics-trainer'"
            )
        finally:
            await admin.close()
        await fake.wait_until(lambda: trainer.trainer_lost is not None, timeout=3, what="the claim noticed lost")
        start = await fake.send_slash_command("train start", {"force": True}, guild_id=zero["id"], user=fake.owner)
        assert (await start.wait_final(timeout=5)).content == TRAINER_LOST
        assert trainer.get_cog("Training").run is None
        status = await fake.send_slash_command("train status", guild_id=zero["id"], user=fake.owner)
        assert (await status.wait_final(timeout=5)).content.startswith("Idle: no training job")
        relayed = await fake.send_slash_command("corpus list", guild_id=one["id"], user=fake.owner)
        assert (await relayed.wait_final(timeout=5)).content == TRAINER_AWAY  # nobody takes handed-over commands
    assert_well_behaved(fake)
