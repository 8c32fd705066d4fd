"""The buttons: under every song (👍 ⭐ 🎲 🗑), under a page of favourites, under the forget-me question.

Every button is a `discord.ui.DynamicItem`: its state lives in its `custom_id` (which song, which page,
whose data), so a click is understood by any running bot, including one restarted since the message was
sent, and no view has to stay in memory or time out. The classes are registered once with
`bot.add_dynamic_items(...)` in `LyricsBot.setup_hook` (bot/client.py), whichever cogs are loaded.

This module only knows how the buttons look and what their ids mean. What a click *does* is up to the
loaded cog that implements the handler protocol for it: 🎲 is the lyrics cog's (`ReplayHandler`), the
rest the favourites cog's (`ButtonHandler`). A click that arrives while no such cog is loaded is answered
with an apology instead of Discord's "This interaction failed"; a handler that fails is reported through
the command tree's on_error, like a failed command.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import discord
from discord import app_commands
from discord.ext import commands

from bot import i18n
from bot.replies import tell

H = TypeVar("H")

# Song and user ids are signed 64-bit integers (the store's columns, Discord's snowflakes): a custom_id's
# number is at most 19 digits, and one that still does not fit reads as 0, which no song or user has, so a
# forged id gets the ordinary "gone" or "not yours" answer instead of an OverflowError in the database.
MAX_ID = 2**63 - 1
_ID = "[0-9]{1,19}"
_PAGE = "[0-9]{1,6}"  # a million pages of favourites: more than anyone saves


def custom_id_number(digits: str) -> int:
    """The number in a custom_id (matched by _ID), or 0 when it does not fit a signed 64-bit integer."""
    number = int(digits)
    return number if number <= MAX_ID else 0


class SongAction(enum.StrEnum):
    """What a button under a song does; the value is the word in its custom_id."""

    VOTE = "vote"
    SAVE = "save"
    AGAIN = "again"
    DELETE = "delete"


class PageDirection(enum.StrEnum):
    PREVIOUS = "prev"
    NEXT = "next"


class ForgetChoice(enum.StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"


@runtime_checkable
class ReplayHandler(Protocol):
    """The cog that answers 🎲 (the lyrics cog). It must answer the interaction."""

    async def on_replay(self, interaction: discord.Interaction, song_id: int) -> None: ...


@runtime_checkable
class ButtonHandler(Protocol):
    """The cog that answers 👍 ⭐ 🗑, the pager and forget-me (the favourites cog). Each method must answer."""

    async def on_song_button(self, interaction: discord.Interaction, action: SongAction, song_id: int) -> None: ...

    async def on_favourites_page(self, interaction: discord.Interaction, owner_id: int, page: int) -> None: ...

    async def on_forget_choice(self, interaction: discord.Interaction, owner_id: int, choice: ForgetChoice) -> None: ...


class ButtonError(app_commands.AppCommandError):
    """A button's handler raised `original`; handed to the command tree's on_error like a command's failure."""

    def __init__(self, original: Exception) -> None:
        super().__init__(f"a button's handler raised {type(original).__name__}: {original}")
        self.original = original


# The bot is an AutoShardedBot, which shares commands.Bot's base class but is not one.
_BOTS = (commands.Bot, commands.AutoShardedBot)


def _handler(client: discord.Client, protocol: type[H]) -> H | None:
    """The loaded cog that implements `protocol`, if any."""
    if isinstance(client, _BOTS):
        for cog in client.cogs.values():
            if isinstance(cog, protocol):
                return cog
    return None


async def _dispatch(interaction: discord.Interaction, protocol: type[H], call: Callable[[H], Awaitable[None]]) -> None:
    """Hand the click to the cog that handles it; answer it ourselves when there is none or it failed.

    discord.py only logs an exception raised by a dynamic item's callback, and the member would be left
    with "This interaction failed" three seconds later; the tree's on_error says something instead.
    """
    bot = interaction.client
    handler = _handler(bot, protocol)
    if handler is None or not isinstance(bot, _BOTS):
        await tell(interaction, i18n.text(interaction.locale, "errors.unavailable"))
        return
    try:
        await call(handler)
    except Exception as exc:  # noqa: BLE001 - the last place to catch anything before the member sees a failure
        await bot.tree.on_error(interaction, ButtonError(exc))


# ---------------------------------------------------------------------------------------------
# under a song


_SONG_LOOKS: dict[SongAction, tuple[str, str | None, discord.ButtonStyle]] = {  # emoji, label, style
    SongAction.VOTE: ("👍", None, discord.ButtonStyle.primary),  # the label is the vote count
    SongAction.SAVE: ("⭐", "Save", discord.ButtonStyle.secondary),
    SongAction.AGAIN: ("🎲", "Again", discord.ButtonStyle.secondary),
    SongAction.DELETE: ("🗑️", "Delete", discord.ButtonStyle.danger),
}


def song_custom_id(action: SongAction, song_id: int) -> str:
    """E.g. "song:vote:42"; at most 32 characters for any 64-bit id, far below Discord's 100."""
    return f"song:{action}:{song_id}"


class SongButton(
    discord.ui.DynamicItem[discord.ui.Button], template=rf"song:(?P<action>vote|save|again|delete):(?P<id>{_ID})"
):
    """One of the four buttons under a song; the song id and the action are in the custom_id."""

    def __init__(self, action: SongAction, song_id: int, *, votes: int = 0) -> None:
        emoji, label, style = _SONG_LOOKS[action]
        if action is SongAction.VOTE:
            label = str(votes)
        super().__init__(
            discord.ui.Button(style=style, emoji=emoji, label=label, custom_id=song_custom_id(action, song_id))
        )
        self.action = action
        self.song_id = song_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SongButton:
        return cls(SongAction(match["action"]), custom_id_number(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if self.action is SongAction.AGAIN:
            await _dispatch(interaction, ReplayHandler, lambda handler: handler.on_replay(interaction, self.song_id))
        else:
            await _dispatch(
                interaction,
                ButtonHandler,
                lambda handler: handler.on_song_button(interaction, self.action, self.song_id),
            )


def song_view(song_id: int, *, votes: int) -> discord.ui.View:
    """The row of buttons under a song, the vote button labelled with `votes`."""
    view = discord.ui.View(timeout=None)
    for action in SongAction:
        view.add_item(SongButton(action, song_id, votes=votes))
    return view


# ---------------------------------------------------------------------------------------------
# under a page of /favourites mine


class FavouritesPageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"favs:(?P<owner>{_ID}):(?P<page>{_PAGE}):(?P<direction>prev|next)",
):
    """◀ or ▶ under a page of someone's favourites; the custom_id holds whose list and the page it leads to."""

    def __init__(self, owner_id: int, page: int, direction: PageDirection, *, disabled: bool = False) -> None:
        emoji = "◀️" if direction is PageDirection.PREVIOUS else "▶️"
        # The direction keeps the two ids apart when both buttons lead to page 0 (a one-page list).
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji=emoji,
                disabled=disabled,
                custom_id=f"favs:{owner_id}:{page}:{direction}",
            )
        )
        self.owner_id = owner_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FavouritesPageButton:
        return cls(custom_id_number(match["owner"]), int(match["page"]), PageDirection(match["direction"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _dispatch(
            interaction,
            ButtonHandler,
            lambda handler: handler.on_favourites_page(interaction, self.owner_id, self.page),
        )


def pager_view(owner_id: int, page: int, pages: int) -> discord.ui.View | None:
    """◀ ▶ for page `page` (0-based) of `pages`; None when everything fits on one page."""
    if pages <= 1:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(FavouritesPageButton(owner_id, max(page - 1, 0), PageDirection.PREVIOUS, disabled=page == 0))
    view.add_item(
        FavouritesPageButton(owner_id, min(page + 1, pages - 1), PageDirection.NEXT, disabled=page >= pages - 1)
    )
    return view


# ---------------------------------------------------------------------------------------------
# under the forget-me question


class ForgetButton(
    discord.ui.DynamicItem[discord.ui.Button], template=rf"forget:(?P<owner>{_ID}):(?P<choice>confirm|cancel)"
):
    """Confirm or Cancel for /favourites forget-me; only the member named in the custom_id may press it."""

    def __init__(self, owner_id: int, choice: ForgetChoice, locale: i18n.Locale = None) -> None:
        """`locale`: the language of the label (the question is the asker's alone); a click rebuilds the button
        without one, and the message keeps the label it was sent with."""
        confirm = choice is ForgetChoice.CONFIRM
        style = discord.ButtonStyle.danger if confirm else discord.ButtonStyle.secondary
        label = i18n.text(locale, "forget.confirm_button" if confirm else "forget.cancel_button")
        super().__init__(discord.ui.Button(style=style, label=label, custom_id=f"forget:{owner_id}:{choice}"))
        self.owner_id = owner_id
        self.choice = choice

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ForgetButton:
        return cls(custom_id_number(match["owner"]), ForgetChoice(match["choice"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _dispatch(
            interaction,
            ButtonHandler,
            lambda handler: handler.on_forget_choice(interaction, self.owner_id, self.choice),
        )


def forget_view(owner_id: int, locale: i18n.Locale = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton(owner_id, ForgetChoice.CONFIRM, locale))
    view.add_item(ForgetButton(owner_id, ForgetChoice.CANCEL, locale))
    return view


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (SongButton, FavouritesPageButton, ForgetButton)
