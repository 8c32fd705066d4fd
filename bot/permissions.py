"""Who may do admin things (retrain the model, delete other members' songs).

    @app_commands.command()
    @admin_only()                      # refuses with NotAdmin, which the tree's on_error answers
    async def train(self, interaction): ...

    if is_admin(interaction, bot.settings): ...   # inside a handler (e.g. deleting someone else's song)

Checked on OUR side for every admin action: a command's `default_permissions` is only a hint to
Discord's client, which a server owner can override per role or per channel.

An admin is
  * anyone whose id is in `settings.admin_ids` (LYRICS_ADMIN_IDS), anywhere, DMs included; or
  * in a guild, a member with the Administrator permission there.
In DMs there is no guild and so no permission to speak of: only `admin_ids` count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.client import LyricsBot

T = TypeVar("T")


class NotAdmin(app_commands.CheckFailure):
    """The user may not run this command; the tree's on_error tells them who may (messages.ADMIN_ONLY)."""


def is_admin(interaction: discord.Interaction, settings: Settings) -> bool:
    """Whether the user behind `interaction` may run admin actions."""
    if interaction.user.id in settings.admin_ids:
        return True
    if interaction.guild_id is None:
        return False  # a DM (or a group DM): Discord reports the DM's implicit permissions, which mean nothing here
    member = interaction.user
    if isinstance(member, discord.Member) and member.guild_permissions.administrator:
        return True
    # Discord sends the member's computed permissions in the channel with every guild interaction
    # (`member.permissions`); discord.py exposes them as `interaction.permissions`. Administrator
    # there is the same bit, so either source is enough.
    return interaction.permissions.administrator


def admin_only() -> Callable[[T], T]:
    """An app_commands.check that lets only admins (is_admin) run the command; others get NotAdmin."""

    async def predicate(interaction: discord.Interaction[LyricsBot]) -> bool:
        if not is_admin(interaction, interaction.client.settings):
            raise NotAdmin("only admins may run this command")
        return True

    check: Callable[[Any], Any] = app_commands.check(predicate)
    return check
