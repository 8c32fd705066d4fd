"""Who may do privileged things: admins (delete other members' songs in their server) and owners (the shared model).

    @app_commands.command()
    @owner_only()                      # refuses with NotOwner, which the tree's on_error answers
    async def train(self, interaction): ...

    if is_admin(interaction, bot.settings): ...   # inside a handler (e.g. deleting someone else's song)
    if await is_owner(interaction): ...           # inside a handler, for an owner-only action

Checked on OUR side for every privileged action: a command's `default_permissions` is only a hint to
Discord's client, which a server owner can override per role or per channel.

An admin (of one server's songs) is
  * anyone whose id is in `settings.admin_ids` (LYRICS_ADMIN_IDS), anywhere, DMs included; or
  * in a guild, a member with the Administrator permission there.
In DMs there is no guild and so no permission to speak of: only `admin_ids` count.

An owner (of the one model every server shares: training, cancelling, forcing a swap) is
  * anyone whose id is in `settings.admin_ids`, anywhere; or
  * the application's owner, or a member of the team that owns it (discord.py's `Bot.is_owner`: team
    members with the admin or developer role), from the application info Discord sends; or
  * in a server listed in `settings.train_guild_ids` (LYRICS_TRAIN_GUILD_IDS), a member with the
    Administrator permission there.
Any other server's Administrator is not an owner: whoever creates a server and invites the bot must
not be able to replace the model every other server uses.

Who may *see* a song: whoever can read the channel it was written in (`can_read`). Song ids are
sequential, so /favourites must not show one to a member who merely guesses its number. What the bot posts
for a whole channel to see (the public leaderboard) shows only songs from public channels
(`everyone_can_read`) and from that channel itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

T = TypeVar("T")


class NotOwner(app_commands.CheckFailure):
    """The user is not one of the bot's owners; the tree's on_error tells them who may (errors.owner_only)."""


class ShuttingDown(app_commands.CheckFailure):
    """The bot is shutting down and takes no new command; the tree's on_error says so (errors.shutting_down)."""


def has_administrator(interaction: discord.Interaction) -> bool:
    """Whether the user has the Administrator permission in the guild the interaction comes from (never in a DM)."""
    if interaction.guild_id is None:
        return False  # a DM (or a group DM): Discord reports the DM's implicit permissions, which mean nothing here
    member = interaction.user
    if isinstance(member, discord.Member) and member.guild_permissions.administrator:
        return True
    # Discord sends the member's computed permissions in the channel with every guild interaction
    # (`member.permissions`); discord.py exposes them as `interaction.permissions`. Administrator
    # there is the same bit, so either source is enough.
    return interaction.permissions.administrator


def is_admin(interaction: discord.Interaction, settings: Settings) -> bool:
    """Whether the user behind `interaction` may run admin actions (on this server's songs)."""
    return interaction.user.id in settings.admin_ids or has_administrator(interaction)


async def is_owner(interaction: discord.Interaction[LyricsBot]) -> bool:
    """Whether the user behind `interaction` is one of the bot's owners (see the module docstring).

    The application's owner and team come from Discord's application info, fetched once and cached by
    discord.py. If that fetch fails, only LYRICS_ADMIN_IDS and LYRICS_TRAIN_GUILD_IDS count this time.
    """
    bot = interaction.client
    settings = bot.settings
    user = interaction.user
    if user.id in settings.admin_ids:
        return True
    if interaction.guild_id in settings.train_guild_ids and has_administrator(interaction):
        return True
    try:
        return await bot.is_owner(user)
    except discord.HTTPException as exc:
        log.warning("could not fetch the application's owners from Discord (%s); treating %d as no owner", exc, user.id)
        return False


def can_read(interaction: discord.Interaction, channel_id: int) -> bool:
    """Whether the member behind a guild `interaction` can read channel (or thread) `channel_id` of that guild.

    From the guild's cached roles and permission overwrites (discord.py's `permissions_for`) and the roles
    the interaction reports for the member: View Channel and Read Message History. A channel the bot does
    not know (deleted, or an archived thread) counts as unreadable, and so does a private thread the member
    cannot manage: songs are hidden rather than shown by mistake.
    """
    if interaction.channel_id == channel_id:
        return True  # they are in it
    guild, member = interaction.guild, interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return False
    channel = guild.get_channel_or_thread(channel_id)
    if channel is None or isinstance(channel, discord.CategoryChannel):
        return False
    permissions = channel.permissions_for(member)
    if not (permissions.view_channel and permissions.read_message_history):
        return False
    if isinstance(channel, discord.Thread) and channel.is_private():
        return permissions.manage_threads or channel.owner_id == member.id
    return True


def everyone_can_read(guild: discord.Guild, channel_id: int) -> bool:
    """Whether channel (or thread) `channel_id` of `guild` is public: its @everyone role may view it and read its
    history. A song from there may be shown to a whole channel; one from a private channel or thread may not."""
    channel = guild.get_channel_or_thread(channel_id)
    if isinstance(channel, discord.Thread):
        if channel.is_private():
            return False
        channel = channel.parent
    if channel is None or isinstance(channel, discord.CategoryChannel):
        return False
    permissions = channel.permissions_for(guild.default_role)
    return permissions.view_channel and permissions.read_message_history


def readable_channels(interaction: discord.Interaction) -> set[int]:
    """The ids of the channels and active threads of the interaction's guild its member can read."""
    guild = interaction.guild
    if guild is None:
        return set()
    places: list[discord.abc.Snowflake] = [*guild.channels, *guild.threads]
    return {place.id for place in places if can_read(interaction, place.id)}


def owner_only() -> Callable[[T], T]:
    """An app_commands.check that lets only the bot's owners (is_owner) run the command; others get NotOwner."""

    async def predicate(interaction: discord.Interaction[LyricsBot]) -> bool:
        if not await is_owner(interaction):
            raise NotOwner("only the bot's owners may run this command")
        return True

    check: Callable[[Any], Any] = app_commands.check(predicate)
    return check
