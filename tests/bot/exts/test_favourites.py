"""/favourites (mine, top, show, remove, forget-me) and the ⭐ button, through the fake Discord on a real database."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import i18n
from bot.client import LyricsBot
from bot.exts.favourites import PAGE_SIZE
from bot.store import NewSong
from tests.bot.helpers import SEED, click, component, ephemeral_text, song_id, write_song
from tests.fakediscord import FakeDiscord, Interaction, make_user
from tests.fakediscord import payloads as p

FORGET_CANCELLED = i18n.text("en", "forget.cancelled")
INTERNAL_ERROR = i18n.text("en", "errors.internal")
NO_FAVOURITES = i18n.text("en", "favourites.none")
NOT_YOUR_LIST = i18n.text("en", "favourites.not_your_list")
NOT_YOUR_QUESTION = i18n.text("en", "favourites.not_your_question")


def not_found(song_id: int) -> str:
    return i18n.text("en", "favourites.not_found", id=song_id)


LISTED = re.compile(r"\*\*#(\d+)\*\*")


def listed_ids(inter: Interaction) -> list[int]:
    """Song ids in the order an embed list shows them."""
    return [int(found) for found in LISTED.findall(inter.message.embeds[0]["description"])]


async def command(
    fake: FakeDiscord, name: str, options: dict[str, Any] | None = None, *, user: dict[str, Any] | None = None
) -> Interaction:
    inter = await fake.send_slash_command(name, options, user=user)
    await inter.wait_final()
    return inter


def new_song(
    guild_id: int,
    author_id: int,
    *,
    channel_id: int = 1,
    text: str = "窗外的麻雀\n在电线杆上多嘴",
    random_seed: int = 1,
) -> NewSong:
    """A song as if written in `channel_id` (a channel the fake does not have is one nobody can read)."""
    return NewSong(
        guild_id=guild_id,
        channel_id=channel_id,
        author_id=author_id,
        seed=SEED,
        temperature=0.8,
        length=10,
        random_seed=random_seed,
        bundle_hash="test-bundle",
        text=text,
    )


def at(moment: datetime):
    return lambda: moment


def rows(bot: LyricsBot, sql: str, *args: Any) -> list[tuple]:
    """Read the bot's database directly (WAL lets a second connection read while the bot's is open)."""
    with sqlite3.connect(bot.store.path) as db:
        return db.execute(sql, args).fetchall()


# ---------------------------------------------------------------------------------------------


async def test_save_and_unsave(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    message = await write_song(fake_discord)
    sid, fan = song_id(message), make_user("bob")
    fan_id = int(fan["id"])

    assert "Saved song" in await ephemeral_text(await click(fake_discord, message, "save", fan))
    assert [s.id for s in await lyrics_bot.store.list_favourites(fan_id)] == [sid]
    assert "Removed" in await ephemeral_text(await click(fake_discord, message, "save", fan))  # a toggle
    assert await lyrics_bot.store.list_favourites(fan_id) == []

    await click(fake_discord, message, "save", fan)
    removed = await command(fake_discord, "favourites remove", {"id": sid}, user=fan)
    assert removed.message.ephemeral and f"Removed song #{sid}" in removed.content
    assert await lyrics_bot.store.list_favourites(fan_id) == []
    again = await command(fake_discord, "favourites remove", {"id": sid}, user=fan)
    assert again.message.ephemeral and "is not among your saved songs" in again.content


async def test_mine_is_newest_first_and_paginated(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    store, fan = lyrics_bot.store, make_user("bob")
    fan_id, guild_id = int(fan["id"]), int(fake_discord.guild["id"])
    empty = await command(fake_discord, "favourites mine", user=fan)
    assert empty.message.ephemeral and empty.content == NO_FAVOURITES

    start = datetime(2024, 5, 1, tzinfo=UTC)
    ids = [await store.add_song(new_song(guild_id, 1, random_seed=i)) for i in range(12)]
    saved_order = ids[5:] + ids[:5]  # saved in an order unlike the songs' ids
    for minute, sid in enumerate(saved_order):
        store.clock = at(start + timedelta(minutes=minute))
        await store.add_favourite(fan_id, sid)
    newest_first = saved_order[::-1]

    mine = await command(fake_discord, "favourites mine", user=fan)
    assert mine.message.ephemeral
    assert listed_ids(mine) == newest_first[:PAGE_SIZE]
    assert "page 1 of 3" in mine.message.embeds[0]["footer"]["text"]
    owner = fan["id"]
    assert mine.message.custom_ids() == [f"favs:{owner}:0:prev", f"favs:{owner}:1:next"]
    assert component(mine.message, f"favs:{owner}:0:prev")["disabled"] is True

    page = mine.message
    for number, next_id in ((2, f"favs:{owner}:1:next"), (3, f"favs:{owner}:2:next")):
        turn = await fake_discord.click_button(page, next_id, user=fan)
        assert (await turn.wait_response())["type"] == 7
        assert f"page {number} of 3" in page.embeds[0]["footer"]["text"]
    assert listed_ids(turn) == newest_first[2 * PAGE_SIZE :]
    assert component(page, f"favs:{owner}:2:next")["disabled"] is True

    back = await fake_discord.click_button(page, f"favs:{owner}:1:prev", user=fan)
    await back.wait_response()
    assert listed_ids(back) == newest_first[PAGE_SIZE : 2 * PAGE_SIZE]

    nosy = await fake_discord.click_button(page, f"favs:{owner}:2:next", user=make_user("eve"))
    assert await ephemeral_text(nosy) == NOT_YOUR_LIST


async def test_top_orders_by_votes_and_filters_by_period(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    store, guild_id = lyrics_bot.store, int(fake_discord.guild["id"])
    general = int(fake_discord.channel["id"])
    now = datetime.now(UTC)
    fans = list(range(1000, 1010))

    async def song_with_votes(written: datetime, votes: int, guild: int = guild_id) -> int:
        store.clock = at(written)
        sid = await store.add_song(new_song(guild, 1, channel_id=general))
        for fan in fans[:votes]:
            await store.toggle_vote(sid, fan)
        return sid

    old = await song_with_votes(now - timedelta(days=40), 9)
    last_month = await song_with_votes(now - timedelta(days=10), 5)
    this_week = await song_with_votes(now - timedelta(days=2), 3)
    today = await song_with_votes(now - timedelta(hours=1), 3)  # ties with this_week: the newer first
    elsewhere = await song_with_votes(now, 10, guild=guild_id + 1)  # another server's song never shows
    await song_with_votes(now, 0)  # no votes: not on a leaderboard
    store.clock = lambda: datetime.now(UTC)

    board = await command(fake_discord, "favourites top")
    assert not board.message.ephemeral  # a leaderboard is for everyone
    assert listed_ids(board) == [old, last_month, today, this_week]
    assert "👍 9" in board.message.embeds[0]["description"] and elsewhere not in listed_ids(board)
    assert listed_ids(await command(fake_discord, "favourites top", {"period": "month"})) == [
        last_month,
        today,
        this_week,
    ]
    assert listed_ids(await command(fake_discord, "favourites top", {"period": "week"})) == [today, this_week]
    assert listed_ids(await command(fake_discord, "favourites top", {"period": "all"}))[0] == old

    store.clock = at(now + timedelta(days=60))  # two months on, nothing was written this month
    quiet = await command(fake_discord, "favourites top", {"period": "month"})
    assert quiet.message.ephemeral and "No votes yet" in quiet.content


async def test_show_gives_everything_that_reproduces_the_song(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    message = await write_song(fake_discord, temperature=1.1, length=15)
    sid = song_id(message)
    await click(fake_discord, message, "vote", make_user("bob"))
    song = await lyrics_bot.store.get_song(sid)

    shown = await command(fake_discord, "favourites show", {"id": sid})
    assert shown.message.ephemeral
    [embed] = shown.message.embeds
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert embed["description"] == song.text
    assert fields["Votes"] == "1"
    assert fields["Seed"] == SEED and fields["Temperature"] == "1.1" and fields["Length"] == "15"
    assert fields["Random seed"] == str(song.random_seed)
    assert fields["Model"] == f"`{lyrics_bot.engine.info.bundle_hash}`"
    assert fields["Asked by"] == f"<@{fake_discord.user['id']}>"  # shown, never pinged (embeds don't ping)


async def test_unknown_and_other_servers_songs(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    guild_id = int(fake_discord.guild["id"])
    elsewhere = await lyrics_bot.store.add_song(new_song(guild_id + 1, 1))
    for sid in (elsewhere, 987654):
        shown = await command(fake_discord, "favourites show", {"id": sid})
        assert shown.message.ephemeral and shown.content == not_found(sid)
    removed = await command(fake_discord, "favourites remove", {"id": 987654})
    assert removed.message.ephemeral and "not among your saved songs" in removed.content
    board = await command(fake_discord, "favourites top")
    assert board.message.ephemeral and "No votes yet" in board.content


async def test_forget_me_really_deletes(fake_discord: FakeDiscord, lyrics_bot: LyricsBot, tmp_path) -> None:
    """Her votes, her saves and the songs she asked for (with others' votes and saves of them) go from the
    database, and their text from the file itself (secure_delete); their messages go where the bot can still
    reach them. The confirmation lists exactly that, and the outcome says what happened."""
    alice, bob = fake_discord.user, make_user("bob")
    alice_id, bob_id = int(alice["id"]), int(bob["id"])
    marker = "忘记我吧"
    hers = await write_song(fake_discord, user=alice, seed=marker)
    his = await write_song(fake_discord, user=bob)
    for user, message in ((alice, his), (bob, hers)):
        await click(fake_discord, message, "vote", user)
        await click(fake_discord, message, "save", user)
    await click(fake_discord, his, "save", bob)  # bob saves his own song too
    # A second song of hers, in a channel the bot has since lost access to: its message cannot be reached.
    hidden = await fake_discord.add_channel("archive")
    elsewhere = await (
        await fake_discord.send_slash_command(
            "lyrics", {"seed": marker, "length": 10}, user=alice, channel_id=hidden["id"]
        )
    ).wait_final(timeout=30)
    hidden["permission_overwrites"].append(
        p.overwrite(fake_discord.bot_user["id"], p.MEMBER_OVERWRITE, deny=p.VIEW_CHANNEL)
    )

    def data(user_id: int) -> tuple[int, int, int]:
        return (
            rows(lyrics_bot, "SELECT COUNT(*) FROM votes WHERE user_id = ?", user_id)[0][0],
            rows(lyrics_bot, "SELECT COUNT(*) FROM favourites WHERE user_id = ?", user_id)[0][0],
            rows(lyrics_bot, "SELECT COUNT(*) FROM songs WHERE author_id = ?", user_id)[0][0],
        )

    assert data(alice_id) == (1, 1, 2) and data(bob_id) == (1, 2, 1)

    question = await command(fake_discord, "favourites forget-me", user=alice)
    assert question.message.ephemeral
    assert question.content.splitlines()[1:5] == [
        "• your 1 vote(s)",
        "• your 1 saved song(s) (the saves; the songs stay for whoever wrote them)",
        "• the 2 song(s) you asked for, and their messages where the bot can still reach them",
        "• with those songs, the 1 vote(s) and 1 save(s) other members gave them",
    ]
    confirm, cancel = f"forget:{alice_id}:confirm", f"forget:{alice_id}:cancel"
    assert question.message.custom_ids() == [confirm, cancel]

    intruder = await fake_discord.click_button(question.message, confirm, user=bob)
    assert await ephemeral_text(intruder) == NOT_YOUR_QUESTION
    cancelled = await fake_discord.click_button(question.message, cancel, user=alice)
    assert (await cancelled.wait_response())["type"] == 7
    assert question.message.content == FORGET_CANCELLED and question.message.components == []
    assert data(alice_id) == (1, 1, 2)

    question = await command(fake_discord, "favourites forget-me", user=alice)
    done = await fake_discord.click_button(question.message, confirm, user=alice)
    assert (await done.wait_response())["type"] == 6  # acknowledged at once; deleting takes a while
    await done.wait_final(until=lambda i: i.edits)
    outcome = question.message.content
    assert outcome.startswith("Done") and "• the 2 song(s) you asked for" in outcome
    assert "Messages of those songs deleted: 1 of 2." in outcome and "1 could not be reached" in outcome
    assert question.message.components == []

    assert data(alice_id) == (0, 0, 0)
    assert data(bob_id) == (0, 1, 1)  # his vote for her song and his save of it went with it; his own stay
    assert await lyrics_bot.store.get_song(song_id(hers)) is None
    assert await lyrics_bot.store.get_song(song_id(elsewhere)) is None
    assert (await lyrics_bot.store.get_song(song_id(his))).votes == 0  # her vote for his song is gone
    assert hers.deleted and not elsewhere.deleted and not his.deleted  # the unreachable one stays, as reported
    mine = await command(fake_discord, "favourites mine", user=alice)
    assert mine.content == NO_FAVOURITES
    # Not in the database file, nor in its write-ahead log: secure_delete zeroed the freed pages.
    for file in tmp_path.glob("lyrics.db*"):
        assert marker.encode() not in file.read_bytes(), file.name


async def test_synced_command_payload(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    synced, guild_scoped = fake_discord.find_command("favourites", fake_discord.guild["id"])
    assert synced is not None and guild_scoped
    subcommands = {option["name"]: option for option in synced["options"]}
    assert list(subcommands) == ["mine", "top", "show", "remove", "forget-me"]
    assert all(option["type"] == 1 and 1 <= len(option["description"]) <= 100 for option in subcommands.values())
    [period] = subcommands["top"]["options"]
    assert period["name"] == "period" and not period.get("required", False)
    assert [choice["value"] for choice in period["choices"]] == ["week", "month", "all"]
    for name in ("show", "remove"):
        [song] = subcommands[name]["options"]
        assert (song["name"], song["type"], song["required"], song["min_value"]) == ("id", 4, True, 1)
        assert song["max_value"] <= 2**53  # Discord's largest integer option
    await command(fake_discord, "favourites mine")  # a reply, for the per-test checks on allowed mentions


async def test_direct_messages(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    """A song written in a DM has working buttons there; leaderboards are per server."""
    reply = await (await fake_discord.send_slash_command("lyrics", {"seed": SEED, "length": 10}, dm=True)).wait_final(
        timeout=30
    )
    sid = song_id(reply)
    assert (await lyrics_bot.store.get_song(sid)).guild_id == 0
    assert "Saved song" in await ephemeral_text(await click(fake_discord, reply, "save", fake_discord.user))
    shown = await fake_discord.send_slash_command("favourites show", {"id": sid}, dm=True)
    assert (await shown.wait_final()).embeds[0]["title"] == f"Song #{sid}"
    elsewhere = await command(fake_discord, "favourites show", {"id": sid})  # from the server: not visible
    assert elsewhere.content == not_found(sid)
    top = await fake_discord.send_slash_command("favourites top", dm=True)
    assert "per server" in (await top.wait_final()).content


async def test_failures_of_commands_and_buttons_end_in_one_apology(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    """A command and a button that fail (here: the database lost a table) both get the tree's on_error answer."""
    message = await write_song(fake_discord)
    await asyncio.to_thread(rows, lyrics_bot, "DROP TABLE favourites")  # the bot keeps serving meanwhile
    mine = await command(fake_discord, "favourites mine")
    assert mine.message.ephemeral and mine.content == INTERNAL_ERROR
    save = await click(fake_discord, message, "save", make_user("bob"))
    assert await ephemeral_text(save) == INTERNAL_ERROR


async def test_songs_from_channels_a_member_cannot_read_stay_hidden(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    """Song ids are sequential, so anyone can guess one: /favourites show and top reveal a song only to members
    who can read the channel it was written in."""
    guild_id = fake_discord.guild["id"]
    staff = await fake_discord.add_role("staff")
    insider = make_user("insider")
    fake_discord.give_role(insider, staff)
    private = await fake_discord.add_channel(
        "staff-room",
        overwrites=[
            p.overwrite(guild_id, p.ROLE_OVERWRITE, deny=p.VIEW_CHANNEL),  # @everyone: no
            p.overwrite(staff["id"], p.ROLE_OVERWRITE, allow=p.VIEW_CHANNEL),
            p.overwrite(fake_discord.bot_user["id"], p.MEMBER_OVERWRITE, allow=p.VIEW_CHANNEL),
        ],
    )
    inside = await (
        await fake_discord.send_slash_command(
            "lyrics", {"seed": "秘密", "length": 10}, user=insider, channel_id=private["id"]
        )
    ).wait_final(timeout=30)
    outside = await write_song(fake_discord, user=make_user("bob"))  # in #general
    secret, public = song_id(inside), song_id(outside)
    for sid in (secret, public):
        await lyrics_bot.store.toggle_vote(sid, 4242)  # both on the leaderboard
    member = fake_discord.user  # alice: no staff role

    shown = await command(fake_discord, "favourites show", {"id": secret}, user=member)
    assert shown.message.ephemeral and shown.content == not_found(secret)  # as if it did not exist
    assert "秘密" not in str(shown.message.embeds)
    board = await command(fake_discord, "favourites top", user=member)
    assert listed_ids(board) == [public]

    # Those who can read the channel see it, from any channel of the server (only themselves: see below).
    seen = await command(fake_discord, "favourites show", {"id": secret}, user=insider)
    assert seen.message.embeds[0]["description"].startswith("秘密")


async def test_the_public_leaderboard_shows_only_what_everyone_in_the_channel_can_read(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    """/favourites top is posted for the whole channel to read, so a moderator asking it in #general must not
    post the ids, votes and first words of songs from a private channel: those come in a leaderboard only they
    see. In the private channel itself, its songs are everyone's there to see."""
    guild_id = fake_discord.guild["id"]
    mods = await fake_discord.add_role("mods")
    moderator = make_user("moderator")
    fake_discord.give_role(moderator, mods)
    private = await fake_discord.add_channel(
        "mod-room",
        overwrites=[
            p.overwrite(guild_id, p.ROLE_OVERWRITE, deny=p.VIEW_CHANNEL),
            p.overwrite(mods["id"], p.ROLE_OVERWRITE, allow=p.VIEW_CHANNEL),
            p.overwrite(fake_discord.bot_user["id"], p.MEMBER_OVERWRITE, allow=p.VIEW_CHANNEL),
        ],
    )
    inside = await (
        await fake_discord.send_slash_command(
            "lyrics", {"seed": "秘密会议", "length": 10}, user=moderator, channel_id=private["id"]
        )
    ).wait_final(timeout=30)
    outside = await write_song(fake_discord, user=make_user("bob"))  # in #general
    secret, public = song_id(inside), song_id(outside)
    for voter in (4242, 4343):
        await lyrics_bot.store.toggle_vote(secret, voter)  # the private song leads the board
    await lyrics_bot.store.toggle_vote(public, 4242)

    board = await fake_discord.send_slash_command("favourites top", user=moderator)  # in #general
    posted = await board.wait_final()
    assert not posted.ephemeral
    assert [int(n) for n in LISTED.findall(posted.embeds[0]["description"])] == [public]
    assert "秘密" not in str(posted.embeds) and f"#{secret}" not in str(posted.embeds)
    await board.wait_final(until=lambda i: i.followups)
    wider = board.followups[-1]
    assert wider.ephemeral  # the moderator's own, wider view
    assert [int(n) for n in LISTED.findall(wider.embeds[0]["description"])] == [secret, public]
    public_posts = [m for m in fake_discord.messages if not m.ephemeral and m.channel_id == fake_discord.channel["id"]]
    assert not any("秘密" in str(m.embeds) or f"#{secret}**" in str(m.embeds) for m in public_posts)

    # Asked in the private channel, whose members can all read its songs: one public board with both.
    inner = await fake_discord.send_slash_command("favourites top", user=moderator, channel_id=private["id"])
    assert not (await inner.wait_final()).ephemeral
    assert listed_ids(inner) == [secret, public] and inner.followups == []
    # A member who reads #general only gets the public board, and nothing else.
    plain = await command(fake_discord, "favourites top")
    assert listed_ids(plain) == [public] and plain.followups == []
