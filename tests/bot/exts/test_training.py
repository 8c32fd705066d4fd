"""/train and /model info end to end: the real bot on the fake Discord, real `python -m model train` children.

Every job trains a tiny model (hidden 32) on the committed sample corpus; a run costs a few seconds, most of
them the child importing torch and jieba. The live bundle is a copy of the session's tiny bundle in tmp_path
(a swap replaces it), with its metrics rewritten where a test needs the new model to be better or worse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot import i18n
from bot.client import LyricsBot, create_bot
from bot.engine import Engine, load_sampler
from bot.exts.training import Training
from bot.exts.training.options import StartOptions, option, slash_options
from bot.exts.training.progress import ProgressUpdater
from bot.exts.training.texts import duration, failure_text, judge_text, progress_bar, stderr_text
from bot.jobs import JobState, JobStatus, train_argv
from bot.promotion import Promoter
from bot.settings import Settings, SettingsError
from model import config
from model.__main__ import build_parser
from model.checkpoint import BUNDLE_FORMAT, BundleError, atomic_save, load_bundle, safe_load
from model.events import EpochEvent, StepEvent
from model.files import file_sha256
from tests.bot.helpers import PNG_SIGNATURE, bot_env, gone
from tests.fakediscord import FakeDiscord, SentMessage, make_user, running_bot

OWNER_ONLY = i18n.text("en", "errors.owner_only")

ADMINISTRATOR = 1 << 3
TINY = "--hidden 32 --embed 16 --batch-size 8 --seq-len 16 --min-count 2 --seed 0 --judge-songs 0"
SEED = "窗外的麻雀"

pytestmark = pytest.mark.slow


def live_bundle(source: Path, folder: Path, *, bpc: float | None = None) -> Path:
    """A copy of `source` as the live bundle in `folder`, its held-out bpc rewritten to `bpc` if given."""
    path = folder / "lyrics.pt"
    if bpc is None:
        shutil.copy(source, path)
    else:
        bundle = safe_load(source, BUNDLE_FORMAT)
        bundle["metrics"] = {**bundle["metrics"], "bpc": bpc}
        atomic_save(bundle, path)
    return path


def training_env(model: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "LYRICS_MODEL": model,
        "LYRICS_COOLDOWN": 0,
        "LYRICS_TRAIN_ARGS": TINY,
        "LYRICS_TRAIN_UPDATE_INTERVAL": 0.2,
        **overrides,
    }


def cog(bot: LyricsBot) -> Training:
    found = bot.get_cog("Training")
    # load_extension executes the module afresh, so its class is not the one imported here: compare names.
    assert found is not None and type(found).__name__ == Training.__name__
    return found


async def poll_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """For conditions the fake Discord does not see (the child's progress between two edits)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout}s")
        await asyncio.sleep(0.05)


def has(text: str) -> Callable[[Any], bool]:
    return lambda inter: text in (inter.content or "")


def followups_of(inter: Any) -> list[SentMessage]:
    """The follow-up messages an interaction got besides its reply."""
    return [m for m in inter.followups if m is not inter.original]


async def admin_command(fake: FakeDiscord, name: str, options: dict | None = None, **kw: Any):
    """`name` from the application's owner (fake.owner), who is one of the bot's owners."""
    return await fake.send_slash_command(name, options, user=fake.owner, **kw)


async def server_admin_command(fake: FakeDiscord, name: str, options: dict | None = None, **kw: Any):
    """`name` from a member with Administrator in the fake's server who is not one of the bot's owners."""
    return await fake.send_slash_command(name, options, permissions=ADMINISTRATOR, **kw)


def png_of(message: SentMessage) -> bytes:
    [attachment] = message.attachments
    assert attachment.filename == "loss-curve.png" and attachment.content_type == "image/png"
    return attachment.data


async def write_song(fake: FakeDiscord, bot: LyricsBot) -> str:
    """Ask for a song; return the hash of the bundle that wrote it (as stored for the song)."""
    message = await (await fake.send_slash_command("lyrics", {"seed": SEED, "length": 10})).wait_final(timeout=30)
    assert not message.ephemeral and message.embeds[0]["description"].startswith(SEED)
    song_id = int(re.search(r"song #(\d+)", message.embeds[0]["footer"]["text"])[1])
    return (await bot.store.get_song(song_id)).bundle_hash


# ---------------------------------------------------------------------------------------------
# who may


async def test_non_owners_are_refused_and_nothing_starts(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    async with start_bot(**training_env(live_bundle(tiny_bundle, tmp_path))) as bot:
        command, _ = fake_discord.find_command("train", fake_discord.guild["id"])
        assert int(command["default_member_permissions"]) == ADMINISTRATOR  # the hint to Discord's client
        # /train start's options, as StartOptions declares them.
        [start] = [sub for sub in command["options"] if sub["name"] == "start"]
        options = {option["name"]: option for option in start["options"]}
        assert list(options) == ["epochs", "cell", "resume", "force"]
        assert (options["epochs"]["type"], options["epochs"]["min_value"], options["epochs"]["max_value"]) == (
            4,
            1,
            500,
        )
        assert {choice["value"] for choice in options["cell"]["choices"]} == {"gru", "lstm", "rnn"}
        assert options["resume"]["type"] == options["force"]["type"] == 5
        assert not any(option.get("required") for option in options.values())
        for name in ("train start", "train status", "train cancel"):
            refusal = await (await fake_discord.send_slash_command(name)).wait_final()
            assert refusal.ephemeral and refusal.content == OWNER_ONLY, name
            # An Administrator of this server (say, one who created it and invited the bot) is not an owner:
            # the model is every server's.
            forced = {"epochs": 1, "force": True} if name == "train start" else None
            refusal = await (await server_admin_command(fake_discord, name, forced)).wait_final()
            assert refusal.ephemeral and refusal.content == OWNER_ONLY, name
        # In a DM a payload claiming Administrator changes nothing either.
        dm = await (
            await fake_discord.send_slash_command("train start", dm=True, permissions=ADMINISTRATOR)
        ).wait_final()
        assert dm.ephemeral and dm.content == OWNER_ONLY
        assert cog(bot).run is None and cog(bot).jobs.current is None  # no process was started
        # The application's owner may (here: the status, which starts nothing).
        status = await (await admin_command(fake_discord, "train status")).wait_final()
        assert status.ephemeral and status.content.startswith("Idle")


async def test_admin_ids_work_in_dms(fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path) -> None:
    env = training_env(live_bundle(tiny_bundle, tmp_path), LYRICS_ADMIN_IDS=fake_discord.user["id"])
    async with start_bot(**env):
        mine = await (await fake_discord.send_slash_command("train status", dm=True)).wait_final()
        assert mine.ephemeral and mine.content.startswith("Idle") and "held-out bpc" in mine.content
        other = await (
            await fake_discord.send_slash_command("train status", dm=True, user=make_user("stranger"))
        ).wait_final()
        assert other.ephemeral and other.content == OWNER_ONLY
        cancel = await (await fake_discord.send_slash_command("train cancel", dm=True)).wait_final()
        assert cancel.ephemeral and "No training job is running" in cancel.content


# ---------------------------------------------------------------------------------------------
# a run from start to swap


async def test_a_better_model_goes_live_without_a_restart(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    model = live_bundle(tiny_bundle, tmp_path, bpc=99.0)  # any new model beats this
    loads: list[Path] = []

    def counting_loader(path: Path, device: str):
        loads.append(path)
        return load_sampler(path, device)

    engine = Engine(device="cpu", torch_threads=1, loader=counting_loader)
    async with start_bot(engine=engine, **training_env(model)) as bot:
        old_hash = bot.engine.info.bundle_hash
        assert await write_song(fake_discord, bot) == old_hash

        inter = await admin_command(fake_discord, "train start", {"epochs": 2})
        reply = await inter.wait_response()
        assert reply["type"] == 4 and "Training a new model" in reply["data"]["content"]  # at once, not deferred
        final = await inter.wait_final(timeout=90, until=has("Training finished"))

        progress = [edit["content"] for edit in inter.edits[:-1]]
        assert any("░" in text and "/2" in text and "ETA" in text for text in progress), progress
        assert "live model 99.000 → new model" in final.content and "now live" in final.content
        assert png_of(final).startswith(PNG_SIGNATURE)

        # The new bundle replaced the live file (atomically, the old one kept aside) and the engine serves it.
        new_hash = file_sha256(model)
        assert bot.engine.info.bundle_hash == new_hash != old_hash and bot.engine.info.path == model
        assert not (tmp_path / "lyrics.candidate.pt").exists()
        run = cog(bot).run
        assert not run.candidate.exists() and not list(tmp_path.glob("lyrics.candidate-*"))  # moved, nothing left
        assert file_sha256(tmp_path / "lyrics.previous.pt") == old_hash
        assert await write_song(fake_discord, bot) == new_hash

        status = await (await admin_command(fake_discord, "train status")).wait_final()
        assert status.ephemeral and status.content.startswith("State: finished")
        info = await (await fake_discord.send_slash_command("model info")).wait_final()
        assert info.embeds[0]["footer"]["text"].startswith(f"bundle {new_hash[:12]}")
    # The live bundle once at start, the candidate once: deciding, reporting, swapping and /model info
    # all use the bundle the engine loaded, from the file this run wrote (its own: no other run writes it).
    assert loads == [model, run.candidate] and re.fullmatch(r"lyrics\.candidate-[0-9a-f]{8}\.pt", run.candidate.name)


async def test_a_worse_model_stays_out_and_progress_outlives_the_reply_token(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    model = live_bundle(tiny_bundle, tmp_path, bpc=0.5)  # no new model beats this
    async with start_bot(**training_env(model)) as bot:
        old_hash = bot.engine.info.bundle_hash
        # As if 15 minutes had passed: the progress must move to a channel message before the token expires.
        cog(bot).edit_window = 0.0
        inter = await admin_command(fake_discord, "train start", {"epochs": 1, "cell": "rnn"})
        await inter.wait_final(until=has("continues"))
        [channel_message] = [m for m in fake_discord.messages if m.message_type == 0]
        assert "continues" in inter.content and channel_message.id in inter.content  # the reply links to it
        await fake_discord.wait_until(
            lambda: "Training finished" in channel_message.content,
            timeout=90,
            what="the outcome in the channel message",
        )
        assert bot.engine.info.bundle_hash == old_hash == file_sha256(model)

    assert "live model 0.500 → new model" in channel_message.content
    assert "The live model stays" in channel_message.content and "force:true" in channel_message.content
    assert png_of(channel_message).startswith(PNG_SIGNATURE)
    assert load_bundle(tmp_path / "lyrics.candidate.pt").net.config.cell == "rnn"  # kept, for force:true


# ---------------------------------------------------------------------------------------------
# cancel, resume, one job at a time, faults


async def test_cancel_resume_and_one_job_at_a_time(fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path) -> None:
    env = training_env(live_bundle(tiny_bundle, tmp_path), LYRICS_TRAIN_ARGS=TINY + " --patience 500")
    checkpoint = tmp_path / "lyrics.candidate.ckpt"
    async with start_bot(**env) as bot:
        training = cog(bot)
        first = await admin_command(fake_discord, "train start", {"epochs": 500})
        await first.wait_response()
        job = training.run.job
        await poll_until(lambda: job.status.checkpoint, 60, "a first checkpoint")

        second = await (await admin_command(fake_discord, "train start", {"epochs": 1})).wait_final()
        assert second.ephemeral and "already running" in second.content and "/500" in second.content
        assert training.run.job is job
        # Another server's Administrator cannot cancel an owner's run.
        refused = await (await server_admin_command(fake_discord, "train cancel")).wait_final()
        assert refused.ephemeral and refused.content == OWNER_ONLY and not job.done

        cancel = await admin_command(fake_discord, "train cancel")
        await cancel.wait_final(until=has("Training cancelled"))
        assert job.status.state is JobState.CANCELLED and gone(job.status.pid)
        assert "resume:true" in cancel.content and checkpoint.is_file()
        await first.wait_final(timeout=10, until=has("Training cancelled"))
        done = job.status.epoch
        assert 1 <= done < 500

        # Resuming with another network shape fails in the child; its stderr says why.
        wrong = await admin_command(fake_discord, "train start", {"resume": True, "cell": "gru"})
        failed = await wrong.wait_final(timeout=60, until=has("Training failed"))
        assert "another network shape" in failed.content and not failed.ephemeral
        # Its stderr goes to the owner who started it, ephemerally, never to the public progress message.
        assert "```" not in failed.content and "Traceback" not in failed.content
        await fake_discord.wait_until(lambda: followups_of(wrong), what="the stderr for the owner")
        [tail] = followups_of(wrong)
        assert tail.ephemeral and "```" in tail.content and "stderr" in tail.content

        resumed = await admin_command(fake_discord, "train start", {"resume": True, "epochs": done + 1})
        await resumed.wait_final(timeout=60, until=has("Training finished"))
        status = training.run.job.status
        assert status.resumed_from == done and status.epoch == done + 1
        assert [record["epoch"] for record in status.history] == [done + 1]  # one more epoch, not a fresh start


async def test_a_run_speaks_the_language_of_the_owner_who_started_it(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    """The progress message answers no later interaction: it stays in the language of the /train start that
    began it, while each command answers in the language of whoever sent it."""
    env = training_env(live_bundle(tiny_bundle, tmp_path), LYRICS_TRAIN_ARGS=TINY + " --patience 500")
    async with start_bot(**env) as bot:
        start = await admin_command(fake_discord, "train start", {"epochs": 500}, locale="zh-CN")
        reply = await start.wait_response()
        assert reply["data"]["content"].startswith("**正在训练新模型**"), reply
        job = cog(bot).run.job
        await poll_until(lambda: job.status.epoch >= 1, 60, "a first epoch")
        status = await (await admin_command(fake_discord, "train status", locale="zh-TW")).wait_final()
        assert status.ephemeral and status.content.startswith("狀態：執行中。\n**正在训练新模型**"), status.content
        busy = await (await admin_command(fake_discord, "train start", {"epochs": 1})).wait_final()
        assert busy.content.startswith("A training job is already running")  # English for an en-US owner
        cancel = await admin_command(fake_discord, "train cancel", locale="zh-TW")
        assert (await cancel.wait_response())["data"]["content"] == "正在取消訓練任務……"
        cancelled = await cancel.wait_final(until=has("**訓練已取消**"))  # the canceller's language
        assert "`/train start resume:true`" in cancelled.content, cancelled.content
        # The outcome ends the progress message: in the language of the owner who started the run.
        outcome = await start.wait_final(timeout=10, until=has("**训练已取消**"))
        assert "/500 个 epoch" in outcome.content and "当前模型继续服务。" in outcome.content, outcome.content
        assert any("/500 个 epoch" in (edit.get("content") or "") for edit in start.edits)
        # /train status quotes the outcome as it was posted, in the asker's words around it.
        after = await (await admin_command(fake_discord, "train status", locale="zh-TW")).wait_final()
        assert after.content.startswith("狀態：已取消。\n**训练已取消**"), after.content


async def test_an_out_of_range_option_is_refused_in_the_members_language(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    """Discord's client enforces the bounds, but a hand-made payload may not: our own check answers, in the
    member's language, and nothing starts."""
    async with start_bot(**training_env(live_bundle(tiny_bundle, tmp_path))) as bot:
        refused = await (await admin_command(fake_discord, "train start", {"epochs": 0}, locale="zh-CN")).wait_final()
        assert refused.ephemeral and refused.content == "epochs 必须在 1 到 500 之间。", refused.content
        english = await (await admin_command(fake_discord, "train start", {"epochs": 501})).wait_final()
        assert english.content == i18n.text("en", "options.range", name="epochs", low=1, high=500)
        assert cog(bot).run is None


async def test_a_cancelled_run_frees_the_slot_at_once(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    # Progress edits at most every 15 s: the cancelled run's message waits out that interval before it says how
    # the run ended, and a start arriving meanwhile must not be told to cancel a run that is already cancelled.
    env = training_env(
        live_bundle(tiny_bundle, tmp_path), LYRICS_TRAIN_ARGS=TINY + " --patience 500", LYRICS_TRAIN_UPDATE_INTERVAL=15
    )
    async with start_bot(**env) as bot:
        training = cog(bot)
        first = await admin_command(fake_discord, "train start", {"epochs": 500})
        await first.wait_response()
        cancelled = training.run
        await poll_until(lambda: cancelled.job.status.checkpoint, 60, "a first checkpoint")
        await (await admin_command(fake_discord, "train cancel")).wait_final(until=has("Training cancelled"))
        epochs = cancelled.job.status.epoch

        again = await admin_command(fake_discord, "train start", {"resume": True, "epochs": epochs + 1})
        reply = await again.wait_response()
        assert cancelled.outcome is None  # its progress message has not concluded yet
        assert "already running" not in reply["data"]["content"] and "Training a new model" in reply["data"]["content"]
        resumed = training.run
        # Each run writes its own files: the cancelled one's, were it still running, could not touch these.
        assert resumed is not cancelled and resumed.candidate != cancelled.candidate
        await again.wait_final(timeout=60, until=has("Training finished"))
        assert resumed.job.status.resumed_from == epochs  # from the checkpoint the cancelled run kept
        await first.wait_final(timeout=30, until=has("Training cancelled"))


async def test_a_killed_child_is_reported_while_lyrics_keep_answering(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    async with start_bot(**training_env(live_bundle(tiny_bundle, tmp_path))) as bot:
        old_hash = bot.engine.info.bundle_hash
        inter = await admin_command(fake_discord, "train start", {"epochs": 500})
        await inter.wait_response()
        job = cog(bot).run.job
        await poll_until(lambda: job.status.training_since, 60, "training to begin")
        os.kill(job.status.pid, signal.SIGKILL)  # what the kernel's OOM killer does

        final = await inter.wait_final(timeout=30, until=has("Training failed"))
        assert "SIGKILL" in final.content and "The live model keeps serving" in final.content
        assert "```" not in final.content  # no stderr in public
        assert await write_song(fake_discord, bot) == old_hash
        status = await (await admin_command(fake_discord, "train status")).wait_final()
        assert status.content.startswith("State: failed") and "SIGKILL" in status.content
        assert status.ephemeral and "stderr" in status.content  # the owners see its last lines there


async def test_shutdown_stops_the_child(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "the-bot-token-in-the-environment")
    monkeypatch.setenv("LYRICS_DATABASE_URL", "postgresql://bot@db/lyrics?password=hunter2")
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    monkeypatch.setenv("PGHOST", "db.internal")
    async with start_bot(**training_env(live_bundle(tiny_bundle, tmp_path))) as bot:
        inter = await admin_command(fake_discord, "train start", {"epochs": 500})
        await inter.wait_response()
        job = cog(bot).run.job
        await poll_until(lambda: job.status.training_since, 60, "training to begin")
        # Training yields the CPU to the bot: it runs niced.
        assert os.getpriority(os.PRIO_PROCESS, job.status.pid) > os.getpriority(os.PRIO_PROCESS, 0)
        # The child never talks to Discord or the database: it inherits neither's credentials.
        environ = Path(f"/proc/{job.status.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith((b"DISCORD_TOKEN=", b"LYRICS_DATABASE_URL=", b"PG"))]
        assert any(v.startswith(b"PATH=") for v in environ)
        # It is told whose death it must not outlive (model.lifeline).
        assert f"LYRICS_PARENT_PID={os.getpid()}".encode() in environ
        started = time.monotonic()
        await bot.close()
        assert time.monotonic() - started < 10
    assert job.done and job.status.state is JobState.CANCELLED and gone(job.status.pid)
    assert "Training cancelled" in inter.content


async def test_failed_edits_do_not_stop_the_updates_and_the_outcome_is_always_posted(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    """Discord fails a progress edit (503): the next update still comes. Then the message is deleted (404):
    the outcome, swapped or not and why, is posted as a new message in the channel."""
    model = live_bundle(tiny_bundle, tmp_path, bpc=99.0)
    async with start_bot(**training_env(model)) as bot:
        inter = await admin_command(fake_discord, "train start", {"epochs": 3})
        await inter.wait_response()
        outage = fake_discord.fail("PATCH", r"/messages/@original$", status=503, times=1)
        await fake_discord.wait_until(lambda: outage.hits == 1, timeout=60, what="a progress edit that fails")
        await fake_discord.wait_until(lambda: inter.edits, timeout=60, what="a later progress edit")
        assert "Training a new model" in inter.edits[0]["content"]
        gone = fake_discord.fail("PATCH", r"/messages/@original$", status=404, code=10008, times=None)
        await fake_discord.wait_until(
            lambda: any("Training finished" in m.content for m in fake_discord.messages if m.message_type == 0),
            timeout=90,
            what="the outcome as a channel message",
        )
        assert gone.hits >= 1 and bot.engine.info.bundle_hash == file_sha256(model)
    [outcome] = [m for m in fake_discord.messages if m.message_type == 0]
    assert "live model 99.000 → new model" in outcome.content and "now live" in outcome.content
    assert png_of(outcome).startswith(PNG_SIGNATURE)


# ---------------------------------------------------------------------------------------------
# /model info


async def test_model_info_shows_the_live_model_and_its_loss_curve(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    model = live_bundle(tiny_bundle, tmp_path)
    bundle = load_bundle(model)
    # Forced, so the line below is the same on every CPU (auto would pick by this one's flags).
    async with start_bot(**training_env(model, LYRICS_PRECISION="bfloat16")) as bot:
        message = await (await fake_discord.send_slash_command("model info", user=make_user("fan"))).wait_final()
        # Public, with a picture: once per channel in a while; the chart is drawn once per model.
        again = await (await fake_discord.send_slash_command("model info", user=make_user("fan2"))).wait_final()
        assert again.ephemeral and "/model info was just used here" in again.content and "try again in" in again.content
        music = await fake_discord.add_channel("music")
        elsewhere = await (await fake_discord.send_slash_command("model info", channel_id=music["id"])).wait_final()
        assert png_of(elsewhere) == png_of(message) and cog(bot).charts_drawn == 1
    assert not message.ephemeral
    [embed] = message.embeds
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert "hidden 48" in fields["Network"] and "LSTM" in fields["Network"]
    # The precision it samples in: why a random_seed can replay differently on another host.
    assert "writes in bfloat16 on this host" in fields["Network"]
    assert bundle.corpus_sha256[:16] in fields["Corpus"] and "sample_lyrics.txt" in fields["Corpus"]
    held_out = next(value for name, value in fields.items() if name.startswith("Held-out"))
    for key in ("bpc", "net_bpc", "trigram_bpc"):
        assert f"{bundle.metrics[key]:.3f}" in held_out
    assert "<t:" in fields["Training"]  # the training date, in each reader's time zone
    assert embed["image"]["url"] == "attachment://loss-curve.png"
    assert png_of(message).startswith(PNG_SIGNATURE)


async def test_model_info_without_a_model(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    async with start_bot(LYRICS_MODEL=tmp_path / "none.pt"):
        message = await (await fake_discord.send_slash_command("model info")).wait_final()
    assert message.ephemeral and "/train start" in message.content


# ---------------------------------------------------------------------------------------------
# the pure parts


def test_texts() -> None:
    assert progress_bar(0.5, width=4) == "██░░" and progress_bar(2.0, width=2) == "██"
    assert (duration(42), duration(185), duration(3720), duration(None)) == ("42s", "3m 05s", "1h 02m", "?")
    status = JobStatus(state=JobState.FAILED, error="boom", stderr_tail=[f"line {i} " + "x" * 100 for i in range(50)])
    public = failure_text("en", status)
    assert "boom" in public and "line 49" not in public and "```" not in public  # stderr never in public
    text = stderr_text("en", status, budget=1000)
    assert len(text) <= 1000 and "line 49" in text and "line 0 " not in text and text.count("```") == 2


async def test_a_bundle_the_engine_refuses_is_rolled_back(fake_discord: FakeDiscord, tiny_bundle, tmp_path) -> None:
    """If the engine cannot load the new bundle, the files stay as they were and the old model keeps serving."""
    model = live_bundle(tiny_bundle, tmp_path)
    candidate = tmp_path / "lyrics.candidate.pt"
    (tmp_path / "other").mkdir()
    shutil.copy(live_bundle(tiny_bundle, tmp_path / "other", bpc=1.0), candidate)  # another file, another hash
    loads: list[Path] = []

    def loader(path: Path, device: str):
        loads.append(path)
        if len(loads) > 1:
            raise BundleError(f"{path}: refused by this test's engine")
        return load_sampler(path, device)

    settings = Settings.from_env(bot_env(tmp_path, **training_env(model)), env_file=None)
    bot = create_bot(settings, engine=Engine(device="cpu", torch_threads=1, loader=loader), guild_ready_timeout=0.1)
    old_hash = file_sha256(model)
    new_hash = file_sha256(candidate)
    async with running_bot(bot, fake_discord):
        with pytest.raises(BundleError):
            await Promoter(bot.engine).promote(candidate, bot.settings.model_path, force=True)
        assert bot.engine.info.bundle_hash == old_hash
        assert file_sha256(model) == old_hash and file_sha256(candidate) == new_hash

        # The same through /train start: the run finishes, the engine refuses its bundle, the admin hears why.
        inter = await admin_command(fake_discord, "train start", {"epochs": 1, "force": True})
        final = await inter.wait_final(timeout=90, until=has("Training finished"))
        assert "its bundle is unusable" in final.content and "refused by this test's engine" in final.content
        assert bot.engine.info.bundle_hash == old_hash
    assert file_sha256(model) == old_hash and candidate.is_file() and file_sha256(candidate) != new_hash
    assert not (tmp_path / "lyrics.previous.pt").exists()


def test_start_options() -> None:
    options = StartOptions(epochs=3, cell="gru", force=True)
    assert options.child_options() == {"epochs": 3, "cell": "gru"}  # force is the bot's, not the child's
    assert options.describe() == "3 epochs, cell gru, force"
    assert StartOptions().child_options() == {} and StartOptions().describe() == "the default settings"
    # discord.py does not re-check bounds; a hand-made payload could send anything.
    assert StartOptions(epochs=0, cell="transformer").problems() == [
        "epochs must be from 1 to 500.",
        "cell must be one of rnn, gru, lstm.",
    ]


def test_a_new_start_option_is_one_field() -> None:
    """A new /train start option is one field of StartOptions: the slash option, our own bounds check and the
    child's flag (so its TrainConfig field) all follow from it. Here: --clip, which no command offered before."""
    clip = ("clip", float | None, option("梯度裁剪 · Gradient clipping", minimum=0.05, maximum=5.0))
    Extended = dataclasses.make_dataclass("Extended", [clip], bases=(StartOptions,), frozen=True)

    class Probe(commands.Cog):
        @app_commands.command(name="start", description="probe")
        @slash_options(Extended)
        async def start(self, interaction, **values) -> None: ...

    parameters = {parameter.name: parameter for parameter in Probe.start.parameters}
    assert list(parameters) == ["epochs", "cell", "resume", "force", "clip"]
    assert parameters["clip"].type is discord.AppCommandOptionType.number and not parameters["clip"].required
    assert (parameters["clip"].min_value, parameters["clip"].max_value) == (0.05, 5.0)
    assert parameters["clip"].description.startswith("梯度裁剪")

    chosen = Extended(epochs=2, clip=0.25)
    assert Extended(clip=9.0).problems() == ["clip must be from 0.05 to 5.0."]
    argv = train_argv({"corpus": "c.txt", "out": "o.pt"}, chosen.child_options(), python="py")
    assert argv[-4:] == ["--epochs", "2", "--clip", "0.25"]
    child = config.from_args(build_parser().parse_args(argv[3:]))  # what `python -m model train` would run
    assert (child.clip, child.epochs, child.corpus) == (0.25, 2, "c.txt")


def test_training_settings(tmp_path) -> None:
    env = bot_env(
        tmp_path,
        LYRICS_TRAIN_PROCESSES=2,
        LYRICS_TRAIN_THREADS=1,
        LYRICS_TRAIN_ARGS="--hidden 256 --lr=1e-3",
        LYRICS_TRAIN_UPDATE_INTERVAL=10,
    )
    train = Settings.from_env(env, env_file=None).train
    assert (train.processes, train.threads, train.args, train.update_s) == (2, 1, ("--hidden", "256", "--lr=1e-3"), 10)
    assert Settings.from_env(bot_env(tmp_path), env_file=None).train.processes == 1
    for bad, problem in [
        ("--out x.pt", "may not contain --out"),
        ("--corpus=a.txt", "may not contain --corpus"),
        ("--hidden '32", "cannot be split"),
        # The child's argparse would read --ou as --out: parsed with allow_abbrev=False, it is an unknown flag.
        ("--ou elsewhere.pt", "'--ou elsewhere.pt' is not a `python -m model train` flag"),
        ("--cor /etc/passwd", "is not a `python -m model train` flag"),
        ("--no-resume", "may not contain --no-resume"),
        ("--progress=bar", "may not contain --progress"),
        ("--hidden many", "invalid int value: 'many'"),
    ]:
        with pytest.raises(SettingsError, match=problem):
            Settings.from_env(bot_env(tmp_path, LYRICS_TRAIN_ARGS=bad), env_file=None)


class RecordingMessage:
    """Stands in for ProgressMessage in the updater's unit test: records when each edit happens."""

    def __init__(self) -> None:
        self.shown: list[tuple[float, str]] = []

    def seconds_to_handover(self) -> None:
        return None

    async def show(self, content: str, png: bytes | None = None) -> None:
        self.shown.append((time.monotonic(), content))


async def test_progress_edits_are_throttled_and_coalesced() -> None:
    message = RecordingMessage()
    counter = iter(range(1000))
    updater = ProgressUpdater(message, lambda: f"epoch {next(counter)}", interval=0.3)  # type: ignore[arg-type]
    updater.start()
    epoch = EpochEvent(
        epoch=1,
        train_loss=5.0,
        heldout_loss=5.0,
        bpc=7.0,
        lr=0.002,
        seconds=1.0,
        epochs=40,
        best_bpc=7.0,
        improved=True,
        elapsed=1.0,
    )
    for _ in range(20):  # a burst of epochs
        updater.on_event(epoch)
        await asyncio.sleep(0.02)
    updater.on_event(
        StepEvent(epoch=2, step=1, steps=10, loss=5.0)
    )  # batches alone do not edit (within STEP_REFRESH_S)
    await asyncio.sleep(0.4)
    await updater.stop()
    times = [at for at, _ in message.shown]
    assert 1 <= len(times) <= 3, message.shown  # 20 events over 0.4 s: one edit per interval at most
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(times))
    assert time.monotonic() - times[-1] >= 0.29  # stop() waited out the interval before the final edit


async def test_model_info_shows_the_song_quality_report(fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path):
    model = live_bundle(tiny_bundle, tmp_path)
    data = safe_load(model, BUNDLE_FORMAT)
    report = {
        "songs": 60.0,
        "rhyme": 0.58,
        "corpus_rhyme": 0.55,
        "line_mean": 9.9,
        "corpus_line_mean": 9.7,
        "char_auc": 0.51,
        "syntax_auc": 0.56,
        "wordlike": -8.61,
        "corpus_wordlike": -8.67,
        "verbatim": 0.0,
        "corpus_verbatim": 0.009,
        "novel_ngrams": 1.0,
        "corpus_novel_ngrams": 0.999,
        "loops": 0.0,
        "corpus_loops": 0.014,
        "seed_returns": 0.0333,
        "corpus_seed_returns": 0.1554,
        "coherence": 0.2312,
        "corpus_coherence": 1.0,
        "window_auc": 0.5612,
        "corpus_window_auc": 0.5,
        "chorus": 0.0,
        "corpus_chorus": 0.4399,
        "patchwork": 0.4512,
        "corpus_patchwork": 0.0056,
        "targets_met": 9.0,
        "targets": 13.0,
    }
    data["metrics"]["judge"] = report
    atomic_save(data, model)  # a bundle trained with --judge-songs 60 carries exactly this
    async with start_bot(**training_env(model)):
        message = await (await fake_discord.send_slash_command("model info")).wait_final()
    fields = {field["name"]: field["value"] for field in message.embeds[0]["fields"]}
    songs = fields["Its songs (python -m model judge)"]
    assert "rhyming neighbours 58% (corpus 55%)" in songs and "characters 0.51" in songs
    assert "word-likeness -8.61 (corpus -8.67)" in songs and "9 of 13 song targets met" in songs
    assert "first line's word returns 3% (corpus 16%)" in songs and "coherence 0.23 (corpus 1.00)" in songs
    assert "4-line window AUC 0.56" in songs and "chorus 0% (corpus 44%)" in songs
    assert "characters in corpus 5-grams 45.1% (corpus 0.6%)" in songs and len(songs) <= 1024


def test_the_song_report_of_a_bundle_judged_before_the_song_figures():
    old = {"rhyme": 0.58, "corpus_rhyme": 0.55, "targets_met": 8.0, "targets": 8.0}
    assert "as songs" not in judge_text("en", old) and "8 of 8 song targets met" in judge_text("en", old)
    # A figure that meant nothing (NaN, kept as such in the metrics) shows as "?".
    text = judge_text("en", {**old, "seed_returns": 0.2, "corpus_seed_returns": float("nan")})
    assert "first line's word returns 20% (corpus ?)" in text and "chorus ? (corpus ?)" in text
