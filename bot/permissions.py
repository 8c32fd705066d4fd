"""Who may do admin things (retrain the model, delete other members' songs).

    if not is_admin(interaction, bot.settings):
        ...refuse...

Checked on OUR side for every admin action: a command's `default_permissions` is only a hint to
Discord's client, which a server owner can override per role or per channel.

An admin is
  * anyone whose id is in `settings.admin_ids` (LYRICS_ADMIN_IDS), anywhere, DMs included; or
  * in a guild, a member with the Administrator permission there.
In DMs there is no guild and so no permission to speak of: only `admin_ids` count.
"""

from __future__ import annotations

import discord

from bot.settings import Settings


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


# The ephemeral text for a member who is not an admin: what it takes, without naming who is one.
ADMIN_ONLY = ("Only admins can do that (仅限管理员): members with the Administrator permission in this server, "
              "or users listed in LYRICS_ADMIN_IDS.")
