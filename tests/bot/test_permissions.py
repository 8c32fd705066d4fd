"""bot.permissions (is_admin, is_owner) on interactions parsed by the real discord.py from Discord-shaped payloads.

The payloads are the fake Discord's; the bot is logged in to it so that discord.py's state can build
guild members, and asks it for the application's owner and team. End-to-end refusals (through /train)
are in exts/test_training.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import discord
import pytest

from bot import i18n
from bot.client import LyricsBot, create_bot
from bot.permissions import is_admin, is_owner
from bot.settings import Settings
from tests.bot.helpers import bot_env
from tests.fakediscord import FakeDiscord, make_user, running_bot
from tests.fakediscord import payloads as p

OWNER_ONLY = i18n.text("en", "errors.owner_only")

ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5


@pytest.fixture
async def lyrics_bot(fake_discord: FakeDiscord, tmp_path) -> AsyncIterator[LyricsBot]:
    """The bot logged in to the fake (no model needed): it only has to parse interactions here."""
    async with running_bot(bot_with(tmp_path), fake_discord) as bot:
        yield bot


def bot_with(tmp_path, **env: object) -> LyricsBot:
    settings = Settings.from_env(bot_env(tmp_path, **env), env_file=None)
    return create_bot(settings, guild_ready_timeout=0.1)


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
    assert "owner" in OWNER_ONLY and "LYRICS_ADMIN_IDS" in OWNER_ONLY and "LYRICS_TRAIN_GUILD_IDS" in OWNER_ONLY


# ---------------------------------------------------------------------------------------------
# owners: the shared model is theirs, not any server's Administrator's


async def test_the_application_owner_is_an_owner_and_an_administrator_is_not(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    owner, member = fake_discord.owner, fake_discord.user  # fake_discord.owner owns the application
    assert await is_owner(interaction(lyrics_bot, fake_discord, owner))
    assert await is_owner(interaction(lyrics_bot, fake_discord, owner, dm=True))
    assert not await is_owner(interaction(lyrics_bot, fake_discord, member))
    # Administrator of the server they are in (e.g. one they created and invited the bot to): still not an owner.
    assert not await is_owner(interaction(lyrics_bot, fake_discord, member, permissions=ADMINISTRATOR))
    assert not await is_owner(interaction(lyrics_bot, fake_discord, member, dm=True, permissions=ADMINISTRATOR))


async def test_team_admins_and_developers_are_owners(fake_discord: FakeDiscord, tmp_path) -> None:
    lead, developer, reader = make_user("lead"), make_user("dev"), make_user("reader")
    fake_discord.team = p.make_team(lead, [(developer, "developer"), (reader, "read_only")])
    async with running_bot(bot_with(tmp_path), fake_discord) as bot:
        assert await is_owner(interaction(bot, fake_discord, lead, dm=True))
        assert await is_owner(interaction(bot, fake_discord, developer, dm=True))
        assert not await is_owner(interaction(bot, fake_discord, reader, dm=True))  # a read-only team member
        # The pseudo-user Discord reports as the owner of a team-owned application is nobody.
        assert not await is_owner(interaction(bot, fake_discord, fake_discord.owner))
    assert [r.path for r in fake_discord.requests].count("/oauth2/applications/@me") <= 2  # login, then cached


async def test_admin_ids_and_train_guild_administrators_are_owners(fake_discord: FakeDiscord, tmp_path) -> None:
    listed, member = make_user("listed"), fake_discord.user
    env = {"LYRICS_ADMIN_IDS": listed["id"], "LYRICS_TRAIN_GUILD_IDS": fake_discord.guild["id"]}
    async with running_bot(bot_with(tmp_path, **env), fake_discord) as bot:
        assert await is_owner(interaction(bot, fake_discord, listed))
        assert await is_owner(interaction(bot, fake_discord, listed, dm=True))
        # In a server named in LYRICS_TRAIN_GUILD_IDS, its Administrators count; its other members do not,
        # and a DM claiming Administrator means nothing.
        assert await is_owner(interaction(bot, fake_discord, member, permissions=ADMINISTRATOR))
        assert not await is_owner(interaction(bot, fake_discord, member))
        assert not await is_owner(interaction(bot, fake_discord, member, dm=True, permissions=ADMINISTRATOR))
