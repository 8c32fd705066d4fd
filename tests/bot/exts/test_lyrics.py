"""/lyrics end to end: the real bot, the tiny model and the real store, driven through the fake Discord."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
import time

import pytest

from bot import i18n, messages
from bot.client import SHUTDOWN_SECONDS, LyricsBot, create_bot
from bot.engine import Engine
from bot.exts.lyrics import Gate, check_options, parse_rhyme
from bot.settings import Limits, Settings
from model.sample import Sampler, SampleRequest
from tests.bot.helpers import (
    SteppedSampler,
    assert_well_behaved,
    bob,
    bot_env,
    component,
    ephemeral_text,
    song_id,
    write_song,
)
from tests.fakediscord import FakeDiscord, make_guild, make_user, running_bot
from tests.fakediscord.fixtures import TEST_HEARTBEAT_MS

GENERATION_FAILED = i18n.text("en", "errors.generation_failed")
TOO_SLOW = i18n.text("en", "errors.too_slow")

SEED = "窗外的麻雀"
FOOTER = re.compile(r"temperature (?P<t>[\d.]+) · length (?P<n>\d+) · random seed (?P<r>\d+) · (?P<rhyme>[^\n]+)")
PLACE = re.compile(r"#(\d+) in the queue")
# How late a heartbeat may come while songs are written: well under the seconds a batch takes, which a writer
# blocking the event loop would stall it for.
HEARTBEAT_SLACK_S = 0.75


def standin_engine(sampler: SteppedSampler, **options) -> Engine:
    """An engine whose every load gives `sampler` (the test's bundle file is only checked to exist)."""
    return Engine(loader=lambda path, device: sampler, torch_threads=1, **options)


def footer(message) -> str:
    return message.embeds[0]["footer"]["text"]


async def test_synced_command_payload(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    command, guild_scoped = fake_discord.find_command("lyrics", fake_discord.guild["id"])
    assert command is not None and guild_scoped
    assert command["description"]
    options = {option["name"]: option for option in command["options"]}
    assert list(options) == ["seed", "temperature", "length", "rhyme"]
    rhyme = options["rhyme"]
    assert (rhyme["type"], rhyme.get("required", False), rhyme["max_length"]) == (3, False, 10)
    seed, temperature, length = options["seed"], options["temperature"], options["length"]
    assert (seed["type"], seed["required"], seed["min_length"], seed["max_length"]) == (3, True, 1, 200)
    assert (temperature["type"], temperature.get("required", False)) == (10, False)
    assert (temperature["min_value"], temperature["max_value"]) == (0.1, 2.0)
    assert (length["type"], length.get("required", False)) == (4, False)
    assert (length["min_value"], length["max_value"]) == (1, 500)
    for option in options.values():
        assert 1 <= len(option["description"]) <= 100
    # A reply keeps the per-test checks (allowed mentions) meaningful.
    await (await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 5})).wait_final()


async def test_commands_are_for_servers_installs_only(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    """Every command is synced as installable to servers only (integration type 0, no user installs), usable in
    servers and in DMs with the bot (contexts 0 and 1), never in group DMs (2), which only user installs reach."""
    synced = fake_discord.commands[int(fake_discord.guild["id"])]
    assert {c["name"] for c in synced} == {"lyrics", "train", "model", "corpus", "favourites"}
    for command in synced:
        assert command["integration_types"] == [0], command["name"]
        assert sorted(command["contexts"]) == [0, 1], command["name"]
    await (await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 5})).wait_final()


async def test_lyrics_replies_with_a_stored_song(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    inter = await fake_discord.send_slash_command("lyrics", {"seed": SEED, "temperature": 0.9, "length": 40})
    assert (await inter.wait_response())["type"] == 5  # deferred at once
    message = await inter.wait_final()
    assert not message.ephemeral
    [embed] = message.embeds
    assert embed["description"].startswith(SEED)
    assert len(embed["description"].splitlines()) >= 1
    found = FOOTER.search(footer(message))
    assert found and found["t"] == "0.9" and found["n"] == "40"
    random_seed = int(found["r"])

    song_id = int(re.search(r"song #(\d+)", footer(message))[1])
    song = await lyrics_bot.store.get_song(song_id)
    assert song is not None
    assert (song.seed, song.temperature, song.length, song.random_seed) == (SEED, 0.9, 40, random_seed)
    assert song.author_id == int(fake_discord.user["id"]) and song.guild_id == int(fake_discord.guild["id"])
    assert song.message_id == int(message.id)
    assert song.bundle_hash == lyrics_bot.engine.info.bundle_hash
    assert embed["description"] == song.text

    assert found["rhyme"].startswith("rhyme -")  # auto: the first line sets it, and the footer names it
    # The footer is enough to write the same song again.
    again = await lyrics_bot.engine.generate(
        SampleRequest(seed=SEED, temperature=0.9, length=40, random_seed=random_seed)  # /lyrics uses the defaults
    )
    assert again.sample.text == song.text


async def test_a_song_with_a_chorus_shows_its_sections_as_a_lyric_sheet_does(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    # About half of the default-length songs have verses and a chorus (model.plan); a dozen tries find one.
    for i in range(12):
        fan = make_user(f"fan{i}")  # one song at a time per member
        message = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fan)).wait_final()
        assert message.embeds, message.content
        description = message.embeds[0]["description"]
        sections = [block.splitlines() for block in description.split("\n\n")]
        if len(sections) > 2 and len(sections[1]) <= 4:  # a chorus (a song without one has verses of 8 lines)
            break
    else:
        pytest.fail("no song of twelve had a chorus")
    assert len(sections) >= 4 and sections[0][0].startswith(SEED), description
    assert sections[3][:-1] == sections[1][:-1]  # the chorus, sung again (its last line may be new)
    assert "\n\n\n" not in description
    song_id = int(re.search(r"song #(\d+)", footer(message))[1])
    assert description == (await lyrics_bot.store.get_song(song_id)).text


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"seed": ""}, "empty"),
        ({"seed": "   "}, "empty"),
        ({"seed": "雨" * 201}, "201 characters"),
        ({"seed": "窗外\x07的麻雀"}, "control character (U+0007"),
        ({"seed": "窗外\u200b的麻雀"}, "invisible formatting character (U+200B ZERO WIDTH SPACE)"),
        ({"seed": "窗外\u202e的麻雀"}, "U+202E RIGHT-TO-LEFT OVERRIDE"),  # makes text display reversed
        ({"seed": "窗外\u00ad的麻雀"}, "U+00AD SOFT HYPHEN"),
        ({"seed": "\U000e0041窗外"}, "U+E0041 TAG LATIN CAPITAL LETTER A"),
        ({"seed": "窗外\ue000的麻雀"}, "private-use character (U+E000)"),
        ({"seed": "窗外\u3164的麻雀"}, "invisible character (U+3164 HANGUL FILLER)"),
        ({"seed": "Z" + "\u0301\u0300\u0302\u0303" + "algo"}, "more than 3 combining marks"),
        ({"seed": SEED, "temperature": 0}, "temperature 0 is out of range"),
        ({"seed": SEED, "temperature": 1e9}, "temperature 1e+09 is out of range"),
        ({"seed": SEED, "temperature": math.nan}, "temperature must be a number"),
        ({"seed": SEED, "temperature": math.inf}, "temperature must be a number"),
        ({"seed": SEED, "length": 0}, "length 0 is out of range"),
        ({"seed": SEED, "length": 501}, "length 501 is out of range"),
        ({"seed": SEED, "rhyme": "xyz"}, "The rhyme 'xyz' is not one I know"),
        ({"seed": SEED, "rhyme": "花花"}, "one Chinese character"),
    ],
)
async def test_invalid_options_are_refused(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot, options: dict, problem: str
) -> None:
    inter = await fake_discord.send_slash_command("lyrics", options)
    message = await inter.wait_final()
    assert (await inter.wait_response())["type"] == 4 and message.ephemeral
    assert problem in message.content
    assert await lyrics_bot.store.top_songs(int(fake_discord.guild["id"])) == []


async def test_an_invisible_character_is_refused_in_the_members_language(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    inter = await fake_discord.send_slash_command("lyrics", {"seed": "窗外\u3164的麻雀"}, locale="zh-TW")
    message = await inter.wait_final()
    assert (
        message.ephemeral and message.content == "開頭含有不可見字元（U+3164 HANGUL FILLER）：請刪掉它，輸入一般文字。"
    )
    assert await lyrics_bot.store.top_songs(int(fake_discord.guild["id"])) == []


async def test_mentions_in_the_seed_ping_nobody(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    seed = "@everyone <@&123456789012345678> @here"
    message = await (await fake_discord.send_slash_command("lyrics", {"seed": seed, "length": 5})).wait_final()
    shown = message.embeds[0]["description"]
    assert "@everyone" not in shown and "@\u200beveryone" in shown  # shown, but not as a mention
    assert fake_discord.allowed_mentions and all(m == {"parse": []} for m in fake_discord.allowed_mentions)


async def test_links_in_the_seed_are_shown_as_text(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    seed = "看https://evil.example/x [点我](https://evil.example/y)"
    message = await (await fake_discord.send_slash_command("lyrics", {"seed": seed, "length": 5})).wait_final()
    shown = message.embeds[0]["description"]
    assert "://" not in shown  # what Discord turns into a clickable link
    assert "https:\u200b//evil.example/x" in shown and "\\[点我](https:\u200b//evil.example/y)" in shown


async def test_concurrent_requests_are_batched_and_heartbeats_stay_on_time(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    users = [make_user(f"fan{i}") for i in range(20)]
    await fake_discord.wait_until(lambda: len(fake_discord.heartbeats) >= 2, timeout=5)
    start = len(fake_discord.heartbeats)
    interactions = await asyncio.gather(
        *(fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 300}, user=user) for user in users)
    )
    finals = await asyncio.gather(*(inter.wait_final(timeout=60) for inter in interactions))
    for message in finals:
        assert not message.ephemeral and message.embeds[0]["description"].startswith(SEED)
    assert lyrics_bot.engine.stats.requests == 20
    assert lyrics_bot.engine.stats.batches < 20  # concurrent requests shared forward passes
    interval = fake_discord.heartbeat_interval_ms / 1000
    beats = fake_discord.heartbeats[start - 1 :]
    worst = max(b - a for a, b in itertools.pairwise(beats))
    # Writing on the event loop would stall it for the whole batch (about 2 s on a 2-core CPU); a busy machine
    # delays a beat by a few hundred ms (0.58 s seen in CI with other work beside it).
    assert worst < interval + HEARTBEAT_SLACK_S, f"heartbeat gap {worst:.2f}s with a {interval}s interval"


async def test_no_model_explains_how_to_train_one(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    async with start_bot(LYRICS_MODEL=tmp_path / "nothing-here.pt"):
        message = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED})).wait_final()
    assert message.ephemeral
    assert "no model has been trained" in message.content and "python -m model train --corpus" in message.content


async def test_corrupt_model_is_logged_and_explained(fake_discord: FakeDiscord, start_bot, tmp_path, caplog) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file")
    async with start_bot(LYRICS_MODEL=broken):
        message = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED})).wait_final()
    assert message.ephemeral and "python -m model train" in message.content
    assert any(r.levelname == "ERROR" and "broken.pt" in r.getMessage() for r in caplog.records)


async def test_cooldown_says_when_to_come_back(fake_discord: FakeDiscord, start_bot) -> None:
    # A higher in-flight bound keeps the first song's last milliseconds from answering instead of the cooldown.
    async with start_bot(LYRICS_COOLDOWN=30, LYRICS_USER_IN_FLIGHT=5):
        first = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 5})).wait_final()
        assert not first.ephemeral
        second = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 5})).wait_final()
        other = await (
            await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 5}, user=fake_discord.owner)
        ).wait_final()
    assert second.ephemeral
    wait = int(re.search(r"try again in (\d+) s", second.content)[1])
    assert 25 <= wait <= 30
    assert not other.ephemeral  # the cooldown is per member


async def test_one_song_in_progress_per_member(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    sampler = SteppedSampler("model")
    async with start_bot(engine=standin_engine(sampler), LYRICS_COOLDOWN=0):
        first = await fake_discord.send_slash_command("lyrics", {"seed": SEED})
        await fake_discord.wait_until(lambda: sampler.batches, what="the first song's batch")
        again = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED})).wait_final()
        assert again.ephemeral and "already have a song" in again.content and "try again in" in again.content
        sampler.step()
        assert not (await first.wait_final()).ephemeral


async def test_a_full_queue_is_the_only_refusal(fake_discord: FakeDiscord, start_bot) -> None:
    sampler = SteppedSampler("model")
    env = {"LYRICS_COOLDOWN": 0, "LYRICS_MAX_QUEUE": 2, "LYRICS_MAX_BATCH": 2}
    async with start_bot(engine=standin_engine(sampler, max_batch=2, max_queue=2, group_share=2), **env):
        fans = [make_user(f"fan{i}") for i in range(4)]
        running = await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fans[0])
        await fake_discord.wait_until(lambda: sampler.batches, what="the first batch")
        waiting = [await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fan) for fan in fans[1:3]]
        await fake_discord.wait_until(
            lambda: all(inter.content and "#2 in the queue" in inter.content for inter in waiting[1:]),
            what="the second waiting song's place",
        )
        refused = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fans[3])).wait_final()
        assert refused.ephemeral and "The queue is full: 2 songs are waiting" in refused.content
        assert "try again in" in refused.content
        sampler.step()
        sampler.step()
        for inter in (running, *waiting):
            assert (await inter.wait_final(until=lambda i: i.embeds)).embeds[0]["description"] == f"model:{SEED}"
    assert sampler.batches == [[SEED], [SEED, SEED]]


async def test_a_burst_of_200_is_queued_and_members_see_their_place(fake_discord: FakeDiscord, start_bot) -> None:
    """200 members at once, with the real (tiny) model: all get songs, none is refused, those whose song waits
    see their place, edited as the queue moves, and the gateway's heartbeats stay on time."""
    async with start_bot(LYRICS_COOLDOWN=0) as bot:
        members = [make_user(f"fan{i}") for i in range(200)]
        await fake_discord.wait_until(lambda: len(fake_discord.heartbeats) >= 2, timeout=5)
        first_beat = len(fake_discord.heartbeats) - 1
        sent = await asyncio.gather(
            *(fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 60}, user=m) for m in members)
        )
        finals = await asyncio.gather(*(inter.wait_final(timeout=240, until=lambda i: i.embeds) for inter in sent))
        beats = fake_discord.heartbeats[first_beat:]
        stats = bot.engine.stats
    assert all(not message.ephemeral and message.embeds[0]["description"].startswith(SEED) for message in finals)
    assert stats.requests == 200 and stats.refused == 0 and stats.longest_queue > bot.engine.max_batch
    places = [
        [int(PLACE.search(edit["content"])[1]) for edit in inter.edits if PLACE.search(edit.get("content") or "")]
        for inter in sent
    ]
    waited = [seen for seen in places if seen]
    assert len(waited) >= 200 - 2 * bot.engine.max_batch  # at most the first batches' songs did not wait
    assert any(len(seen) >= 2 for seen in waited), places  # some places moved while their songs waited
    assert all(seen == sorted(seen, reverse=True) for seen in waited)  # a place only ever moves up
    interval = fake_discord.heartbeat_interval_ms / 1000
    worst = max(b - a for a, b in itertools.pairwise(beats))
    assert worst < interval + HEARTBEAT_SLACK_S, f"heartbeat gap {worst:.2f}s with a {interval}s interval"


async def test_a_batcher_that_raises_recovers(fake_discord: FakeDiscord, start_bot) -> None:
    """Songs waiting when the batcher dies are told to try again; the next song is written by a new batcher."""
    sampler = SteppedSampler("model")
    async with start_bot(engine=standin_engine(sampler, max_batch=1), LYRICS_COOLDOWN=0) as bot:
        fans = [make_user(f"fan{i}") for i in range(3)]
        dying = await fake_discord.send_slash_command("lyrics", {"seed": "abort"}, user=fans[0])
        await fake_discord.wait_until(lambda: sampler.batches, what="the batch that aborts")
        waiting = [await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fan) for fan in fans[1:]]
        await fake_discord.wait_until(lambda: all(inter.content for inter in waiting), what="places in the queue")
        sampler.step()  # the batch raises something the batcher does not catch: it dies
        for inter in (dying, *waiting):
            message = await inter.wait_final(until=lambda i: i.content == GENERATION_FAILED)
            assert not message.embeds
        after = await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fans[0])
        sampler.step()
        assert (await after.wait_final(until=lambda i: i.embeds)).embeds[0]["description"] == f"model:{SEED}"
        assert bot.engine.stats.batcher_restarts == 1


async def test_a_song_past_its_timeout_is_withdrawn(fake_discord: FakeDiscord, start_bot) -> None:
    sampler = SteppedSampler("model")
    async with start_bot(engine=standin_engine(sampler), LYRICS_COOLDOWN=0, LYRICS_REQUEST_TIMEOUT=1) as bot:
        slow = await fake_discord.send_slash_command("lyrics", {"seed": SEED})
        await fake_discord.wait_until(lambda: sampler.batches, what="its batch")
        queued = await fake_discord.send_slash_command("lyrics", {"seed": "later"}, user=make_user("b"))
        for inter in (slow, queued):
            assert (await inter.wait_final(timeout=5, until=lambda i: i.content == TOO_SLOW)).content == TOO_SLOW
        assert bot.engine.waiting == 0  # the waiting one left the queue
        sampler.step()


async def test_close_lets_songs_in_progress_finish(fake_discord: FakeDiscord, start_bot) -> None:
    async with start_bot() as bot:
        inter = await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 300})
        await inter.wait_response()
        await bot.close()
    assert bot.is_closed()
    message = inter.message
    assert message is not None and not message.loading, message
    assert message.embeds and message.embeds[0]["description"].startswith(SEED), message.content


async def test_shutdown_meets_its_deadline_with_a_batch_that_will_not_finish(
    fake_discord: FakeDiscord, start_bot, tmp_path
) -> None:
    """A batch stuck in the worker thread and songs queued behind it: close() still returns within the
    deadline (inside docker stop's 10 s), every member is told the bot is restarting, and the database is
    closed (SQLite removes the -wal file when the last connection closes cleanly)."""
    sampler = SteppedSampler("model")
    async with start_bot(engine=standin_engine(sampler), LYRICS_COOLDOWN=0) as bot:
        fans = [make_user(f"fan{i}") for i in range(4)]
        running = await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fans[0])
        await fake_discord.wait_until(lambda: sampler.batches, what="the batch that never finishes")
        queued = [await fake_discord.send_slash_command("lyrics", {"seed": SEED}, user=fan) for fan in fans[1:]]
        await fake_discord.wait_until(lambda: all(inter.content for inter in queued), what="places in the queue")
        started = time.monotonic()
        await bot.close()
        took = time.monotonic() - started
    sampler.step()  # let the abandoned worker thread end
    assert took < SHUTDOWN_SECONDS + 0.5, f"shutdown took {took:.1f}s"  # docker stop allows 10 s
    assert [inter.content for inter in (running, *queued)] == [i18n.text("en", "errors.shutting_down")] * 4
    assert bot.engine.abandoned
    assert not (tmp_path / "lyrics.db-wal").exists()


# ---------------------------------------------------------------------------------------------
# the pure parts


def test_check_options_accepts_the_bounds() -> None:
    assert check_options("雨", 0.1, 1) == []
    assert check_options("雨" * 200, 2.0, 500) == []
    assert check_options(" 雨 ", 0.8, 150) == []


def test_check_options_reports_every_problem() -> None:
    assert len(check_options("", math.nan, 0)) == 3
    assert "U+202E" in check_options("abc\u202edef", 0.8, 150)[0]  # a right-to-left override hides text


def test_real_text_passes_the_character_checks() -> None:
    for seed in ("窗外的麻雀", "Tiếng Việt", "e\u0301 a\u0300\u0323", "שָׁלוֹם", "さくら", "café ☕", "1, 2, 3!"):
        assert check_options(seed, 0.8, 150) == [], seed


def test_gate_cooldown_and_bounds() -> None:
    now = [100.0]
    gate = Gate(Limits(cooldown_s=10, per_user=1), clock=lambda: now[0])
    assert gate.admit(1) is None
    assert i18n.text("en", gate.admit(1).reason).startswith("You already have")
    gate.release(1)
    now[0] += 4
    refusal = gate.admit(1)
    assert refusal is not None and refusal.retry_after == pytest.approx(6)
    assert all(gate.admit(user) is None for user in range(2, 100))  # many members: the queue bounds them, not the gate
    assert gate.in_flight == 98
    now[0] += 10
    for user in range(2, 100):
        gate.release(user)
    assert gate.admit(1) is None and gate.in_flight == 1


def test_bot_env_builds_valid_settings(tmp_path) -> None:
    from bot.settings import Settings

    settings = Settings.from_env(bot_env(tmp_path), env_file=None)
    assert settings.model_path == tmp_path / "missing.pt" and settings.device == "cpu"


def test_long_songs_are_cut_at_a_line_break() -> None:
    line = "窗外的麻雀在电线杆上多嘴"  # 12 characters
    text = "\n".join([line] * 400)  # 5,199 characters
    embed = messages.song_embed(messages.SongCard(text=text, temperature=0.8, length=500, random_seed=7), "en-US")
    description = embed.description
    assert len(description) <= messages.DESCRIPTION_LIMIT
    *kept, mark = description.split("\n")
    assert mark == "…" and all(row == line for row in kept)  # whole lines only
    assert "cut at a line break" in embed.footer.text


def test_fit_lines_never_splits_a_character() -> None:
    assert messages.fit_lines("short", 10) == ("short", False)
    text, cut = messages.fit_lines("e\u0301" * 10, 9, mark="…")  # no line break: cut between characters
    assert cut and text.startswith("e\u0301") and text[-2] == "\u0301" and text.endswith("…")
    family = "👨\u200d👩\u200d👧"  # one emoji made of five code points
    text, _ = messages.fit_lines("ab" + family + "cd", 6, mark="…")
    assert text == "ab…"


def test_song_embed_footer() -> None:
    text = "Jay 的雨\n下在心里"
    embed = messages.song_embed(
        messages.SongCard(text=text, temperature=1.25, length=30, random_seed=99, unknown=("J", "a", "y"), song_id=12),
        "en-US",
    )
    assert embed.description == text
    assert embed.footer.text.splitlines() == [
        "temperature 1.25 · length 30 · random seed 99",
        "seed words the model did not know: J, a, y",
        "song #12",
    ]


async def test_a_rhyme_character_is_asked_for_and_shown(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    inter = await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 60, "rhyme": "花"})
    message = await inter.wait_final()
    found = FOOTER.search(footer(message))
    assert found and found["rhyme"] == "rhyme -a (发花), as 花"
    random_seed = int(found["r"])
    again = await lyrics_bot.engine.generate(SampleRequest(seed=SEED, length=60, random_seed=random_seed, rhyme="花"))
    assert again.sample.text == message.embeds[0]["description"]
    off = await (
        await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 20, "rhyme": "off"}, user=bob())
    ).wait_final()
    assert "rhyme off" in footer(off)


def test_the_rhyme_option_reads_words_and_characters() -> None:
    assert [parse_rhyme(v) for v in (None, "", "auto", "自动", "OFF", "不押韵", "花", " 天 ")] == [
        "auto",
        "auto",
        "auto",
        "auto",
        "off",
        "off",
        "花",
        "天",
    ]
    assert [parse_rhyme(v) for v in ("xyz", "花花", "a", "1")] == [None, None, None, None]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
async def test_the_bot_writes_in_the_precision_it_is_given(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, precision: str
) -> None:
    """LYRICS_PRECISION reaches the sampler: the bot's song is the one a sampler in that precision writes."""
    async with start_bot(LYRICS_PRECISION=precision) as bot:
        assert bot.engine.info.precision == precision
        message = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 60})).wait_final()
    request = SampleRequest(seed=SEED, length=60, random_seed=int(FOOTER.search(footer(message))["r"]))
    want = Sampler.load(tiny_bundle, device="cpu", precision=precision).generate(request)
    assert message.embeds[0]["description"] == want.text


async def test_a_button_with_a_number_too_big_for_an_id_is_answered_without_a_traceback(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot, caplog
) -> None:
    """A crafted custom_id (a number past 64 bits) reads as a song nobody has, or matches no button at all."""
    song = await write_song(fake_discord)
    vote = component(song, f"song:vote:{song_id(song)}")
    caplog.set_level(logging.WARNING)
    vote["custom_id"] = f"song:vote:{2**63}"  # 19 digits, one past the largest signed 64-bit id
    answer = await fake_discord.click_button(song, vote["custom_id"], user=bob())
    assert await ephemeral_text(answer) == i18n.text("en", "favourites.not_found", id=0)
    vote["custom_id"] = "song:vote:" + "9" * 40
    ignored = await fake_discord.click_button(song, vote["custom_id"], user=bob())
    await asyncio.sleep(0.5)
    assert ignored.response_type is None  # no button has such an id: nothing runs
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_one_server_cannot_take_the_whole_queue(tiny_bundle, tmp_path) -> None:
    """Half the queue per server (LYRICS_MAX_QUEUE 4: two songs): a third from a busy server is refused, saying
    why, while a member of another server still gets a place."""
    owner = make_user("owner")
    fans = [make_user(f"fan{i}") for i in range(5)]
    busy, quiet = (make_guild(name, members=[owner, *fans], owner=owner) for name in ("busy", "quiet"))
    fake = FakeDiscord([busy, quiet], heartbeat_interval_ms=TEST_HEARTBEAT_MS)
    sampler = SteppedSampler("model")
    env = bot_env(
        tmp_path,
        LYRICS_MODEL=tiny_bundle,
        LYRICS_GUILD_IDS=f"{busy['id']},{quiet['id']}",
        LYRICS_COOLDOWN=0,
        LYRICS_MAX_QUEUE=4,
        LYRICS_MAX_BATCH=1,
    )
    settings = Settings.from_env(env, env_file=None)
    limits = settings.limits
    engine = standin_engine(sampler, max_batch=1, max_queue=limits.max_queue, group_share=limits.guild_share)
    await fake.start()
    try:
        with fake.patch_discord():
            async with running_bot(create_bot(settings, engine=engine, guild_ready_timeout=0.1), fake):

                async def ask(fan: dict, guild: dict):
                    return await fake.send_slash_command("lyrics", {"seed": SEED}, user=fan, guild_id=guild["id"])

                running = await ask(fans[0], busy)
                await fake.wait_until(lambda: sampler.batches, what="the first batch")
                waiting = [await ask(fan, busy) for fan in fans[1:3]]
                await fake.wait_until(lambda: all(i.content for i in waiting), what="the places in the queue")
                refused = await (await ask(fans[3], busy)).wait_final()
                assert refused.ephemeral and refused.content.startswith(
                    "This server already has 2 songs waiting, its share of the queue"
                ), refused.content
                other = await ask(fans[4], quiet)
                await fake.wait_until(lambda: other.content and "#3 in the queue" in other.content, what="a place")
                for _ in range(4):
                    sampler.step()
                for inter in (running, *waiting, other):
                    assert (await inter.wait_final(until=lambda i: i.embeds)).embeds
        assert_well_behaved(fake)
    finally:
        await fake.stop()
