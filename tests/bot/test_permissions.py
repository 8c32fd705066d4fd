"""bot.permissions.is_admin on interactions parsed by the real discord.py from Discord-shaped payloads.

The payloads are the fake Discord's; the bot is logged in to it so that discord.py's state can build
guild members. End-to-end refusals (through /train) are in test_training.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import discord
import pytest

from bot.client import LyricsBot, create_bot
from bot.messages import ADMIN_ONLY
from bot.permissions import is_admin
from bot.settings import Settings
from tests.bot.helpers import bot_env
from tests.fakediscord import FakeDiscord, make_user, running_bot
from tests.fakediscord import payloads as p

ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5


@pytest.fixture
async def lyrics_bot(fake_discord: FakeDiscord, tmp_path) -> AsyncIterator[LyricsBot]:
    """The bot logged in to the fake (no model needed): it only has to parse interactions here."""
    settings = Settings.from_env(bot_env(tmp_path), env_file=None)
    async with running_bot(create_bot(settings, guild_ready_timeout=0.1), fake_discord) as bot:
        yield bot


def interaction(
    bot: LyricsBot, fake: FakeDiscord, user: dict, *, permissions: int = p.DEFAULT_MEMBER_PERMISSIONS, dm: bool = False
) -> discord.Interaction:
    """What discord.py makes of an INTERACTION_CREATE from `user`, in the fake's guild or in a DM."""
    guild = None if dm else fake.guild
    channel = {"id": p.snowflake(), "type": 1, "recipients": [user]} if dm else fake.channel
    payload = p.make_interaction(
        type=2,
        application_id=fake.application_id,
        data={"id": p.snowflake(), "name": "train", "type": 1},
        user=user,
        channel=channel,
        guild=guild,
        permissions=permissions,
    )
    return discord.Interaction(data=payload, state=bot._connection)


async def test_guild_members_need_the_administrator_permission(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    settings = lyrics_bot.settings
    member = fake_discord.user
    assert not is_admin(interaction(lyrics_bot, fake_discord, member), settings)
    assert not is_admin(interaction(lyrics_bot, fake_discord, member, permissions=MANAGE_GUILD), settings)
    assert is_admin(interaction(lyrics_bot, fake_discord, member, permissions=ADMINISTRATOR), settings)
    assert is_admin(
        interaction(lyrics_bot, fake_discord, member, permissions=p.DEFAULT_MEMBER_PERMISSIONS | ADMINISTRATOR),
        settings,
    )


async def test_admin_ids_count_everywhere_and_alone_count_in_dms(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    listed, stranger = fake_discord.user, make_user("stranger")
    settings = replace(lyrics_bot.settings, admin_ids=frozenset({int(listed["id"])}))
    assert is_admin(interaction(lyrics_bot, fake_discord, listed), settings)  # in the guild, without the permission
    assert is_admin(interaction(lyrics_bot, fake_discord, listed, dm=True), settings)
    assert not is_admin(interaction(lyrics_bot, fake_discord, stranger, dm=True), settings)
    # A DM carries no guild permissions that mean anything: a payload claiming Administrator changes nothing.
    assert not is_admin(interaction(lyrics_bot, fake_discord, stranger, dm=True, permissions=ADMINISTRATOR), settings)


def test_the_refusal_says_who_may() -> None:
    assert "Administrator" in ADMIN_ONLY and "LYRICS_ADMIN_IDS" in ADMIN_ONLY
