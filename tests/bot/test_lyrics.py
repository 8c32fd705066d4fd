"""/lyrics end to end: the real bot, the tiny model and the real store, driven through the fake Discord."""

from __future__ import annotations

import asyncio
import itertools
import math
import re

import pytest

from bot import messages
from bot.client import LyricsBot
from bot.exts.lyrics import Gate, check_options
from bot.settings import Limits
from model.sample import SampleRequest
from tests.bot.helpers import bot_env
from tests.fakediscord import FakeDiscord, make_user

SEED = "窗外的麻雀"
FOOTER = re.compile(r"temperature (?P<t>[\d.]+) · length (?P<n>\d+) · random seed (?P<r>\d+)")


def footer(message) -> str:
    return message.embeds[0]["footer"]["text"]


async def test_synced_command_payload(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    command, guild_scoped = fake_discord.find_command("lyrics", fake_discord.guild["id"])
    assert command is not None and guild_scoped
    assert command["description"]
    options = {option["name"]: option for option in command["options"]}
    assert list(options) == ["seed", "temperature", "length"]
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

    # The footer is enough to write the same song again.
    again = await lyrics_bot.engine.generate(
        SampleRequest(seed=SEED, temperature=0.9, length=40, random_seed=random_seed, no_copy=True)
    )
    assert again.sample.text == song.text


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"seed": ""}, "empty"),
        ({"seed": "   "}, "empty"),
        ({"seed": "雨" * 201}, "201 characters"),
        ({"seed": "窗外\x07的麻雀"}, "control character"),
        ({"seed": SEED, "temperature": 0}, "temperature 0 is out of range"),
        ({"seed": SEED, "temperature": 1e9}, "temperature 1e+09 is out of range"),
        ({"seed": SEED, "temperature": math.nan}, "temperature must be a number"),
        ({"seed": SEED, "temperature": math.inf}, "temperature must be a number"),
        ({"seed": SEED, "length": 0}, "length 0 is out of range"),
        ({"seed": SEED, "length": 501}, "length 501 is out of range"),
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


async def test_mentions_in_the_seed_ping_nobody(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    seed = "@everyone <@&123456789012345678> @here"
    message = await (await fake_discord.send_slash_command("lyrics", {"seed": seed, "length": 5})).wait_final()
    shown = message.embeds[0]["description"]
    assert "@everyone" not in shown and "@\u200beveryone" in shown  # shown, but not as a mention
    assert fake_discord.allowed_mentions and all(m == {"parse": []} for m in fake_discord.allowed_mentions)


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
    assert worst < interval + 0.25, f"heartbeat gap {worst:.2f}s with a {interval}s interval"


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


async def test_in_flight_bounds(fake_discord: FakeDiscord, start_bot) -> None:
    async with start_bot(LYRICS_COOLDOWN=0, LYRICS_MAX_IN_FLIGHT=2):
        fans = [fake_discord.user, fake_discord.user, make_user("b"), make_user("c")]
        sent = [
            await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 500}, user=fan) for fan in fans
        ]
        mine_again, overall = [await inter.wait_final(timeout=30) for inter in sent[1::2]]
        await asyncio.gather(*(inter.wait_final(timeout=30) for inter in sent[::2]))
    assert mine_again.ephemeral and "already have a song" in mine_again.content
    assert overall.ephemeral and "busy" in overall.content and "try again in" in overall.content


async def test_close_lets_songs_in_progress_finish(fake_discord: FakeDiscord, start_bot) -> None:
    async with start_bot() as bot:
        inter = await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 300})
        await inter.wait_response()
        await bot.close()
    assert bot.is_closed()
    message = inter.message
    assert message is not None and not message.loading and message.embeds[0]["description"].startswith(SEED)


# ---------------------------------------------------------------------------------------------
# the pure parts


def test_check_options_accepts_the_bounds() -> None:
    assert check_options("雨", 0.1, 1) == []
    assert check_options("雨" * 200, 2.0, 500) == []
    assert check_options(" 雨 ", 0.8, 150) == []


def test_check_options_reports_every_problem() -> None:
    assert len(check_options("", math.nan, 0)) == 3
    assert "U+202E" in check_options("abc\u202edef", 0.8, 150)[0]  # a right-to-left override hides text


def test_gate_cooldown_and_bounds() -> None:
    now = [100.0]
    gate = Gate(Limits(cooldown_s=10, per_user=1, overall=2), clock=lambda: now[0])
    assert gate.admit(1) is None
    assert gate.admit(1).reason.startswith("You already have")
    gate.release(1)
    now[0] += 4
    refusal = gate.admit(1)
    assert refusal is not None and refusal.retry_after == pytest.approx(6)
    assert gate.admit(2) is None and gate.admit(3) is None
    assert gate.admit(4).reason.startswith("I'm busy")
    gate.release(2)
    assert gate.admit(4) is None and gate.in_flight == 2
    now[0] += 10
    gate.release(3)
    gate.release(4)
    assert gate.admit(1) is None


def test_bot_env_builds_valid_settings(tmp_path) -> None:
    from bot.settings import Settings

    settings = Settings.from_env(bot_env(tmp_path), env_file=None)
    assert settings.model_path == tmp_path / "missing.pt" and settings.device == "cpu"


def test_long_songs_are_cut_at_a_line_break() -> None:
    line = "窗外的麻雀在电线杆上多嘴"  # 12 characters
    text = "\n".join([line] * 400)  # 5,199 characters
    embed = messages.song_embed(messages.SongCard(text=text, temperature=0.8, length=500, random_seed=7))
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
        messages.SongCard(text=text, temperature=1.25, length=30, random_seed=99, unknown=("J", "a", "y"), song_id=12)
    )
    assert embed.description == text
    assert embed.footer.text.splitlines() == [
        "temperature 1.25 · length 30 · random seed 99",
        "seed words the model did not know: J, a, y",
        "song #12",
    ]
