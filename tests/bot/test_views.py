"""bot/views.py: what each button's custom_id encodes, how an id is read back (ranges, forged ids), and that
the buttons are the bot's, not a cog's: 🎲 keeps working with the favourites extension unloaded.

The end-to-end behaviour of each click (votes, saves, deletes, pages, forget-me) is exts/test_votes.py's,
exts/test_favourites.py's and test_forgetting.py's.
"""

from __future__ import annotations

import re

import discord
import pytest

from bot import i18n, views
from bot.client import LyricsBot
from bot.views import (
    DYNAMIC_ITEMS,
    MAX_ID,
    FavouritesPageButton,
    ForgetButton,
    ForgetChoice,
    PageDirection,
    SongAction,
    SongButton,
    custom_id_number,
    forget_view,
    pager_view,
    song_custom_id,
    song_view,
)
from tests.bot.helpers import click, ephemeral_text, song_id, write_song
from tests.fakediscord import FakeDiscord, make_user


def template(item: type[discord.ui.DynamicItem]) -> re.Pattern[str]:
    return item.__discord_ui_compiled_template__


def buttons(view: discord.ui.View) -> list[discord.ui.Button]:
    """The buttons a view sends (each a DynamicItem around one)."""
    return [child.item for child in view.children if isinstance(child, discord.ui.DynamicItem)]


def ids(view: discord.ui.View) -> list[str]:
    return [button.custom_id for button in buttons(view)]


async def read_back(item: type[discord.ui.DynamicItem], custom_id: str) -> discord.ui.DynamicItem | None:
    """What discord.py makes of a click on `custom_id`: the item `from_custom_id` builds, or None if no template
    matches (discord.py then ignores the click as no dynamic item's)."""
    match = template(item).fullmatch(custom_id)
    if match is None:
        return None
    return await item.from_custom_id(None, None, match)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# under a song


def test_a_songs_four_buttons_encode_the_action_and_the_song() -> None:
    view = song_view(42, votes=3)
    assert ids(view) == ["song:vote:42", "song:save:42", "song:again:42", "song:delete:42"]
    assert [str(button.emoji) for button in buttons(view)] == ["👍", "⭐", "🎲", "🗑️"]
    assert buttons(view)[0].label == "3" and view.timeout is None  # the vote button shows the count
    assert song_custom_id(SongAction.AGAIN, MAX_ID) == f"song:again:{MAX_ID}"
    assert max(len(song_custom_id(action, MAX_ID)) for action in SongAction) <= 32  # Discord allows 100


async def test_a_song_buttons_id_reads_back_as_what_it_encodes() -> None:
    for action in SongAction:
        button = await read_back(SongButton, song_custom_id(action, 42))
        assert isinstance(button, SongButton) and (button.action, button.song_id) == (action, 42)
    assert await read_back(SongButton, "song:dance:42") is None  # an action no button has
    assert await read_back(SongButton, "song:vote:-1") is None
    assert await read_back(SongButton, "song:vote:" + "1" * 20) is None  # more digits than a 64-bit id has


def test_an_id_that_does_not_fit_64_bits_reads_as_no_song() -> None:
    assert custom_id_number(str(MAX_ID)) == MAX_ID
    assert custom_id_number(str(MAX_ID + 1)) == 0  # 19 digits, too large: no song or user has id 0
    assert custom_id_number("9" * 19) == 0
    assert custom_id_number("0042") == 42


# ---------------------------------------------------------------------------------------------
# under a page of favourites, under the forget-me question


async def test_the_pager_encodes_whose_list_and_the_page_it_leads_to() -> None:
    assert pager_view(7, 0, 1) is None  # everything on one page: no buttons
    first = pager_view(7, 0, 3)
    assert ids(first) == ["favs:7:0:prev", "favs:7:1:next"] and buttons(first)[0].disabled
    middle = pager_view(7, 1, 3)
    assert ids(middle) == ["favs:7:0:prev", "favs:7:2:next"] and not any(b.disabled for b in buttons(middle))
    last = pager_view(7, 2, 3)
    assert ids(last) == ["favs:7:1:prev", "favs:7:2:next"] and buttons(last)[1].disabled
    two = pager_view(7, 0, 2)
    assert len(set(ids(two))) == 2  # the direction keeps the two ids apart
    button = await read_back(FavouritesPageButton, "favs:7:2:next")
    assert isinstance(button, FavouritesPageButton) and (button.owner_id, button.page) == (7, 2)
    assert await read_back(FavouritesPageButton, "favs:7:1234567:next") is None  # past a million pages
    assert await read_back(FavouritesPageButton, "favs:7:2:up") is None
    assert {d.value for d in PageDirection} == {"prev", "next"}


async def test_forget_me_encodes_whose_data_and_the_choice() -> None:
    view = forget_view(99)
    assert ids(view) == ["forget:99:confirm", "forget:99:cancel"]
    assert buttons(view)[0].style is discord.ButtonStyle.danger
    for choice in ForgetChoice:
        button = await read_back(ForgetButton, f"forget:99:{choice}")
        assert isinstance(button, ForgetButton) and (button.owner_id, button.choice) == (99, choice)
    assert await read_back(ForgetButton, "forget:99:maybe") is None


def test_every_button_is_registered_and_no_two_templates_overlap() -> None:
    assert set(DYNAMIC_ITEMS) == {SongButton, FavouritesPageButton, ForgetButton}
    examples = ["song:vote:1", "favs:1:0:next", "forget:1:cancel"]
    for item in DYNAMIC_ITEMS:
        assert sum(bool(template(item).fullmatch(example)) for example in examples) == 1


@pytest.mark.parametrize("protocol", [views.ReplayHandler, views.ButtonHandler])
def test_the_handler_protocols_are_runtime_checkable(protocol: type) -> None:
    assert not isinstance(object(), protocol)


# ---------------------------------------------------------------------------------------------
# the buttons are the bot's: unloading a cog stops its own buttons, not the others'


async def test_the_dice_works_with_the_favourites_extension_unloaded(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    original = await write_song(fake_discord)
    await lyrics_bot.unload_extension("bot.exts.favourites")
    assert "Favourites" not in lyrics_bot.cogs

    again = await click(fake_discord, original, "again", make_user("dora"))
    reply = await again.wait_final(timeout=30)
    assert reply is not None and not reply.ephemeral and song_id(reply) != song_id(original)
    assert (await lyrics_bot.store.get_song(song_id(reply))).seed == (
        await lyrics_bot.store.get_song(song_id(original))
    ).seed

    # 👍 is the favourites cog's: with it unloaded the click is answered with an apology, not a failure.
    vote = await click(fake_discord, original, "vote", make_user("dora"))
    assert await ephemeral_text(vote) == i18n.text("en", "errors.unavailable")
