"""Fixtures for the bot's tests: settings parsed from an environment, and the real bot on the fake Discord.

The bot is built by `bot.client.create_bot`, exactly as `python -m bot` builds it, from settings parsed
by `Settings.from_env` (the same path as production), with the tiny bundle that tests/conftest.py
trains once per session. After each test the fake Discord must have seen no rule violations, no
unknown routes, and no message that could ping anyone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.client import LyricsBot, create_bot
from bot.engine import Engine
from bot.settings import Settings
from tests.bot.helpers import assert_well_behaved, bot_env
from tests.fakediscord import FakeDiscord, running_bot


@pytest.fixture
def start_bot(fake_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path):
    """`async with start_bot(**env_overrides) as bot:` runs the real bot, with the tiny model, on the fake Discord.

    Commands are synced to the fake's guild (LYRICS_GUILD_IDS) so the fake knows their option types.
    """

    @asynccontextmanager
    async def start(engine: Engine | None = None, **overrides: Any) -> AsyncIterator[LyricsBot]:
        """`engine`: a ready-made one (e.g. with a stand-in loader, bot.engine.Engine's seam for tests)."""
        overrides = {"LYRICS_MODEL": tiny_bundle, "LYRICS_GUILD_IDS": fake_discord.guild["id"], **overrides}
        env = bot_env(tmp_path, **overrides)
        settings = Settings.from_env(env, env_file=None)
        bot = create_bot(settings, engine=engine, guild_ready_timeout=0.1)
        async with running_bot(bot, fake_discord) as running:
            yield running
        assert_well_behaved(fake_discord)

    return start


@pytest.fixture
async def lyrics_bot(start_bot) -> AsyncIterator[LyricsBot]:
    """The bot with default settings (cooldown off, so tests can ask twice)."""
    async with start_bot(LYRICS_COOLDOWN=0) as bot:
        yield bot
