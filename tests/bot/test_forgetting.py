"""forget-me beyond the database, through the fake Discord: song messages deleted in the background, also after a
restart (and the member told), songs in progress dropped, other songs' vote labels corrected, corpus records
anonymised, and /favourites refused while the bot shuts down."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from bot import i18n
from bot.client import LyricsBot
from bot.corpora import Corpora, Uploader
from bot.engine import Engine
from tests.bot.helpers import SteppedSampler, click, song_id, vote_label, write_song
from tests.fakediscord import FakeDiscord, Interaction, SentMessage, make_user

CORPUS_RECORDS_NOTE = i18n.text("en", "forget.corpus_note")
FORGOTTEN_SONG = i18n.text("en", "lyrics.forgotten_song")
SHUTTING_DOWN = i18n.text("en", "errors.shutting_down")


def rows(bot: LyricsBot, sql: str, *args: Any) -> list[tuple]:
    with sqlite3.connect(bot.store.path) as db:
        return db.execute(sql, args).fetchall()


async def forget(fake: FakeDiscord, user: dict[str, Any]) -> tuple[Interaction, SentMessage]:
    """`user` runs /favourites forget-me and confirms; returns the confirmation click and the question's message."""
    question = await fake.send_slash_command("favourites forget-me", user=user)
    await question.wait_final()
    confirm = await fake.click_button(question.message, f"forget:{user['id']}:confirm", user=user)
    await confirm.wait_response()
    return confirm, question.message


def dms_to(fake: FakeDiscord, user: dict[str, Any]) -> list[SentMessage]:
    """What the bot sent `user` in direct messages."""
    dm = fake._dm_channel(user)["id"]
    return [m for m in fake.messages if m.channel_id == dm and not m.interaction]


async def test_deleting_resumes_after_a_restart_and_the_member_is_told(fake_discord: FakeDiscord, start_bot) -> None:
    """Discord fails the deletion of two of her three song messages (one of them never recorded in the database)
    when the bot stops: after the restart the rest are deleted, and she gets a direct message saying so."""
    alice = fake_discord.user
    async with start_bot(LYRICS_COOLDOWN=0) as bot:
        songs = []
        for _ in range(3):  # one at a time: a member has one song in progress at most
            songs.append(await write_song(fake_discord, user=alice))
            await fake_discord.wait_until(lambda: bot.get_cog("Lyrics").gate.in_flight == 0, what="the song done")
        # The bot stopped between posting the last one and recording it: its message id was never stored.
        await asyncio.to_thread(rows, bot, "UPDATE songs SET message_id = NULL WHERE id = ?", song_id(songs[2]))
        failing = fake_discord.fail(
            "DELETE", rf"/channels/\d+/messages/({songs[1].id}|{songs[2].id})$", status=503, times=None
        )
        _, reply = await forget(fake_discord, alice)
        await fake_discord.wait_until(lambda: songs[0].deleted and failing.hits >= 2, what="a pass over her messages")
        assert rows(bot, "SELECT COUNT(*) FROM songs")[0][0] == 0  # the database forgot her at once
    assert "being deleted in the background (1 done so far, 2 to go)" in reply.content
    assert "direct message" in reply.content
    assert not songs[1].deleted and not songs[2].deleted and dms_to(fake_discord, alice) == []

    fake_discord.faults.remove(failing)  # Discord is well again
    async with start_bot(LYRICS_COOLDOWN=0) as bot:
        await fake_discord.wait_until(lambda: dms_to(fake_discord, alice), timeout=10, what="the direct message")
        assert songs[1].deleted and songs[2].deleted
        assert await bot.store.pending_deletions() == [] and await bot.store.settled_forgets() == []
        assert rows(bot, "SELECT COUNT(*) FROM forget_deletions")[0][0] == 0  # her id is gone from there too
    [told] = dms_to(fake_discord, alice)
    assert "Messages of those songs deleted: 3 of 3." in told.content


async def test_the_reply_says_how_it_went_when_it_is_quick(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    alice = fake_discord.user
    song = await write_song(fake_discord, user=alice)
    confirm, reply = await forget(fake_discord, alice)
    await confirm.wait_final(until=lambda i: i.edits)
    assert song.deleted and "Messages of those songs deleted: 1 of 1." in reply.content
    assert dms_to(fake_discord, alice) == []  # told once, in the reply
    assert await lyrics_bot.store.settled_forgets() == []


async def test_her_songs_in_progress_are_dropped(fake_discord: FakeDiscord, start_bot) -> None:
    """A song of hers waiting in the queue leaves it at once, and one being written is not kept when it comes
    out: neither is stored under her id after her forget-me, and neither is posted. A song she asks for
    afterwards is hers as usual."""
    sampler = SteppedSampler("model")
    engine = Engine(loader=lambda path, device: sampler, torch_threads=1, max_batch=1)
    alice, bob = fake_discord.user, make_user("bob")
    async with start_bot(engine=engine, LYRICS_COOLDOWN=0) as bot:
        his = await fake_discord.send_slash_command("lyrics", {"seed": "他的歌"}, user=bob)
        await fake_discord.wait_until(lambda: sampler.batches, what="his batch")
        queued = await fake_discord.send_slash_command("lyrics", {"seed": "排队的歌"}, user=alice)
        await fake_discord.wait_until(lambda: bot.engine.waiting == 1, what="her song in the queue")
        confirm, _ = await forget(fake_discord, alice)
        await confirm.wait_final(until=lambda i: i.edits)
        assert bot.engine.waiting == 0  # out of the queue at once
        note = await queued.wait_final(until=lambda i: i.content == FORGOTTEN_SONG)
        assert note.ephemeral and queued.original.deleted
        sampler.step()
        await his.wait_final(until=lambda i: i.embeds)

        writing = await fake_discord.send_slash_command("lyrics", {"seed": "写着的歌"}, user=alice)
        await fake_discord.wait_until(lambda: len(sampler.batches) == 2, what="her song's batch")
        confirm, _ = await forget(fake_discord, alice)
        await confirm.wait_final(until=lambda i: i.edits)
        sampler.step()  # the batch finishes after her forget-me
        note = await writing.wait_final(until=lambda i: i.content == FORGOTTEN_SONG)
        assert note.ephemeral and writing.original.deleted and not writing.original.embeds
        await asyncio.sleep(0.2)  # anything the finished batch would still store, stored
        assert rows(bot, "SELECT seed FROM songs ORDER BY id") == [("他的歌",)]

        later = await fake_discord.send_slash_command("lyrics", {"seed": "新的歌"}, user=alice)
        await fake_discord.wait_until(lambda: len(sampler.batches) == 3, what="her new song's batch")
        sampler.step()
        assert (await later.wait_final(until=lambda i: i.embeds)).embeds[0]["description"] == "model:新的歌"
        assert rows(bot, "SELECT author_id FROM songs WHERE seed = ?", "新的歌") == [(int(alice["id"]),)]


async def test_vote_labels_on_other_songs_lose_her_votes(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    alice, bob, carol = fake_discord.user, make_user("bob"), make_user("carol")
    his = await write_song(fake_discord, user=bob)
    await click(fake_discord, his, "vote", alice)
    await click(fake_discord, his, "vote", carol)
    assert vote_label(his) == "2"
    confirm, _ = await forget(fake_discord, alice)
    await confirm.wait_final(until=lambda i: i.edits)
    assert vote_label(his) == "1" and (await lyrics_bot.store.get_song(song_id(his))).votes == 1
    assert not his.deleted and his.embeds  # only the buttons changed


async def test_her_corpus_records_are_anonymised(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    """A lyrics file she added with /corpus add stays in the corpus, without her id and name on its record; the
    confirmation says so before she confirms."""
    alice, settings = fake_discord.user, lyrics_bot.settings
    corpora = Corpora(settings.corpora_path, settings.corpus_path)
    text = "她加的第一行歌词\n她加的第二行歌词\n".encode()
    await asyncio.to_thread(corpora.add, "她的.txt", text, Uploader(int(alice["id"]), "alice"))
    await asyncio.to_thread(corpora.add, "他的.txt", "他加的一行新歌词\n".encode(), Uploader(4242, "bob"))

    question = await fake_discord.send_slash_command("favourites forget-me", user=alice)
    assert CORPUS_RECORDS_NOTE in (await question.wait_final()).content
    confirm = await fake_discord.click_button(question.message, f"forget:{alice['id']}:confirm", user=alice)
    await confirm.wait_final(until=lambda i: i.edits)
    assert "taken off the records of 1 corpus file(s)" in question.message.content

    entries = {entry.name: entry for entry in corpora.entries()}
    assert entries["她的.txt"].added_by is None and entries["她的.txt"].lines == 2  # the lyrics stay
    assert entries["他的.txt"].added_by == Uploader(4242, "bob")
    records = "".join(path.read_text() for path in Path(settings.corpora_path).glob("*.json"))
    assert alice["id"] not in records and '"alice"' not in records


async def test_favourites_are_refused_during_shutdown(fake_discord: FakeDiscord, start_bot) -> None:
    """A shutdown waits for the replies in progress; a /favourites command arriving meanwhile is refused as
    /lyrics is (the store is about to close), not started."""
    sampler = SteppedSampler("model")
    engine = Engine(loader=lambda path, device: sampler, torch_threads=1)
    async with start_bot(engine=engine, LYRICS_COOLDOWN=0) as bot:
        bob = make_user("bob")
        song = await fake_discord.send_slash_command("lyrics", {"seed": "慢慢写"}, user=bob)
        await fake_discord.wait_until(lambda: sampler.batches, what="a song being written")
        question = await fake_discord.send_slash_command("favourites forget-me", user=bob)
        await question.wait_final()
        closing = asyncio.create_task(bot.close())
        await fake_discord.wait_until(lambda: bot.shutting_down, what="the shutdown")
        for name in ("favourites mine", "favourites forget-me", "favourites top"):
            refused = await fake_discord.send_slash_command(name)
            message = await refused.wait_final()
            assert message.ephemeral and message.content == SHUTTING_DOWN, name
        confirm = await fake_discord.click_button(question.message, f"forget:{bob['id']}:confirm", user=bob)
        assert (await confirm.wait_final()).content == SHUTTING_DOWN  # asked before, confirmed too late
        sampler.step()
        await closing
    assert (await song.wait_final()).embeds  # his song in progress was not dropped: he was not forgotten
