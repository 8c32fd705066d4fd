"""The buttons under every song (👍 ⭐ 🎲 🗑), end to end: the real bot and store, clicked through the fake Discord."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading

import discord

from bot import i18n
from bot.client import LyricsBot
from tests.bot.helpers import SEED, bob, click, ephemeral_text, song_id, vote_label, write_song
from tests.fakediscord import FakeDiscord, make_user

DELETE_REFUSED = i18n.text("en", "favourites.delete_refused")
SELF_VOTE = i18n.text("en", "favourites.self_vote")

# ---------------------------------------------------------------------------------------------
# the buttons on a reply


async def test_lyrics_reply_carries_the_four_buttons(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    message = await write_song(fake_discord)
    sid = song_id(message)
    assert message.custom_ids() == [f"song:{action}:{sid}" for action in ("vote", "save", "again", "delete")]
    assert len(message.components) == 1  # one action row of four buttons
    assert vote_label(message) == "0"
    assert [c["emoji"]["name"] for c in message.components[0]["components"]] == ["👍", "⭐", "🎲", "🗑️"]
    assert f"song #{sid}" in message.embeds[0]["footer"]["text"]
    assert (await lyrics_bot.store.get_song(sid)).message_id == int(message.id)


async def test_vote_then_withdraw(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    message = await write_song(fake_discord)
    sid, voter = song_id(message), bob()

    first = await click(fake_discord, message, "vote", voter)
    assert first.response_type == 7 and first.callbacks[0]["elapsed"] < 3
    assert vote_label(message) == "1" and (await lyrics_bot.store.get_song(sid)).votes == 1
    assert message.embeds and message.embeds[0]["description"].startswith(SEED)  # only the buttons changed

    second = await click(fake_discord, message, "vote", voter)
    assert second.response_type == 7
    assert vote_label(message) == "0" and (await lyrics_bot.store.get_song(sid)).votes == 0


async def test_voting_for_your_own_song_does_not_count(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    message = await write_song(fake_discord)  # written for fake_discord.user
    inter = await click(fake_discord, message, "vote", fake_discord.user)
    assert await ephemeral_text(inter) == SELF_VOTE
    assert vote_label(message) == "0" and (await lyrics_bot.store.get_song(song_id(message))).votes == 0


async def test_concurrent_clicks_are_all_counted(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    """100 clicks from 20 members at once: the count in the database and on the button is exact."""
    message = await write_song(fake_discord)
    sid = song_id(message)
    voters = [make_user(f"fan{i}") for i in range(20)]
    rng = random.Random(7)
    clicks = voters * 2 + [rng.choice(voters) for _ in range(60)]  # everyone clicks at least twice
    rng.shuffle(clicks)
    expected = sum(clicks.count(voter) % 2 for voter in voters)  # an odd number of clicks leaves a vote
    assert len(clicks) == 100 and 0 < expected < 20

    interactions = await asyncio.gather(
        *(fake_discord.click_button(message, f"song:vote:{sid}", user=voter) for voter in clicks)
    )
    answers = await asyncio.gather(*(inter.wait_response(timeout=10) for inter in interactions))
    assert all(answer["type"] == 7 for answer in answers)
    assert max(answer["elapsed"] for answer in answers) < 3

    assert (await lyrics_bot.store.get_song(sid)).votes == expected
    # Answers may reach Discord out of order; the bot then edits the message once more with the stored count.
    await fake_discord.wait_until(
        lambda: vote_label(message) == str(expected), timeout=5, what=f"vote label {expected}"
    )
    await asyncio.sleep(0.3)  # nothing later overwrites it
    assert vote_label(message) == str(expected)


async def test_again_writes_a_new_song_with_the_same_settings(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    original = await write_song(fake_discord, temperature=0.9, length=20, rhyme="花")
    clicker = bob()
    inter = await click(fake_discord, original, "again", clicker)
    assert inter.response_type == 5  # deferred: writing takes a while
    reply = await inter.wait_final(timeout=30)
    assert reply is not None and not reply.ephemeral and reply is not original
    old = await lyrics_bot.store.get_song(song_id(original))
    new = await lyrics_bot.store.get_song(song_id(reply))
    assert new.id != old.id and reply.custom_ids()[0] == f"song:vote:{new.id}"  # the new reply has its own buttons
    assert (new.seed, new.temperature, new.length) == (old.seed, old.temperature, old.length) == (SEED, 0.9, 20)
    assert new.rhyme == old.rhyme == "花" and "as 花" in reply.embeds[0]["footer"]["text"]
    assert new.random_seed != old.random_seed
    assert new.author_id == int(clicker["id"])  # whoever clicked asked for it
    assert new.message_id == int(reply.id)
    assert original.embeds and original.custom_ids()  # the original is left as it was


async def test_delete_by_author_other_member_and_admin(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    # Two members: one member's second /lyrics could still count as in flight (per-member bound).
    mine, theirs = await write_song(fake_discord), await write_song(fake_discord, user=fake_discord.owner)
    stranger, admin = bob(), make_user("carol")

    refused = await click(fake_discord, mine, "delete", stranger)
    assert await ephemeral_text(refused) == DELETE_REFUSED
    assert await lyrics_bot.store.get_song(song_id(mine)) is not None and mine.custom_ids()

    sid = song_id(mine)
    by_author = await click(fake_discord, mine, "delete", fake_discord.user)
    assert by_author.response_type == 7
    assert await lyrics_bot.store.get_song(sid) is None
    assert f"Song #{sid} was deleted by its author" in mine.content
    assert mine.embeds == [] and mine.components == []  # no song, no buttons

    sid = song_id(theirs)
    by_admin = await click(fake_discord, theirs, "delete", admin, permissions=discord.Permissions(administrator=True))
    assert by_admin.response_type == 7
    assert await lyrics_bot.store.get_song(sid) is None
    assert f"Song #{sid} was deleted by an admin" in theirs.content and theirs.components == []


async def test_admin_ids_may_delete_too(fake_discord: FakeDiscord, start_bot) -> None:
    admin = bob()
    async with start_bot(LYRICS_COOLDOWN=0, LYRICS_ADMIN_IDS=admin["id"]) as bot:
        message = await write_song(fake_discord)
        sid = song_id(message)
        inter = await click(fake_discord, message, "delete", admin)
        assert inter.response_type == 7 and await bot.store.get_song(sid) is None


async def test_old_buttons_work_after_a_restart(fake_discord: FakeDiscord, start_bot) -> None:
    """A new bot on the same database understands the buttons of messages the previous one sent."""
    voter, saver = bob(), make_user("carol")
    async with start_bot(LYRICS_COOLDOWN=0):
        message = await write_song(fake_discord)
        await click(fake_discord, message, "vote", voter)
        await click(fake_discord, message, "save", saver)
    sid = song_id(message)
    old_ids = message.custom_ids()

    async with start_bot(LYRICS_COOLDOWN=0) as bot:
        mine = await (await fake_discord.send_slash_command("favourites mine", user=saver)).wait_final()
        assert f"**#{sid}**" in mine.embeds[0]["description"]

        assert message.custom_ids() == old_ids  # the first run's message, untouched since
        vote = await click(fake_discord, message, "vote", saver)
        assert vote.response_type == 7 and vote_label(message) == "2"
        assert (await bot.store.get_song(sid)).votes == 2
        unsave = await click(fake_discord, message, "save", saver)
        assert "Removed" in await ephemeral_text(unsave)
        assert await bot.store.list_favourites(int(saver["id"])) == []
        again = await click(fake_discord, message, "again", voter)
        assert again.response_type == 5 and song_id(await again.wait_final(timeout=30)) > sid


async def test_buttons_are_answered_in_time_while_the_database_is_slow(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    """Another process holds SQLite's write lock for 4 s (a backup, the sqlite3 shell): the clicks that wait
    on it are deferred within Discord's 3 s, and each gets its answer once the database is free."""
    message = await write_song(fake_discord)
    sid, voter, saver, replayer = song_id(message), bob(), make_user("carol"), make_user("dave")
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with sqlite3.connect(lyrics_bot.store.path, isolation_level=None) as other:
            other.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(10)
            other.execute("ROLLBACK")

    holder = asyncio.create_task(asyncio.to_thread(hold_the_write_lock))
    await asyncio.to_thread(locked.wait, 5)
    clicks = [
        await fake_discord.click_button(message, f"song:vote:{sid}", user=voter),
        await fake_discord.click_button(message, f"song:save:{sid}", user=saver),
        await fake_discord.click_button(message, f"song:again:{sid}", user=replayer),  # waits behind the writes
    ]
    answers = await asyncio.gather(*(inter.wait_response(timeout=5) for inter in clicks))
    assert [answer["type"] for answer in answers] == [6, 6, 5]  # deferred: silently, silently, "thinking…"
    assert all(answer["elapsed"] < 3 for answer in answers)
    await asyncio.sleep(4 - max(answer["elapsed"] for answer in answers))
    release.set()
    await holder

    _, save, again = clicks
    await fake_discord.wait_until(lambda: vote_label(message) == "1", timeout=10, what="the vote on the button")
    assert "Saved song" in (await save.wait_final(timeout=10, until=lambda i: i.followups)).content
    assert (await again.wait_final(timeout=30)).embeds[0]["description"].startswith(SEED)
    assert (await lyrics_bot.store.get_song(sid)).votes == 1
