"""pytest fixtures and helpers for tests that drive a real discord.py client against `FakeDiscord`.

tests/conftest.py does ``from tests.fakediscord.fixtures import *``, which brings in the fixtures below.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from .server import FakeDiscord

__all__ = ["fake_discord", "running_bot"]

# Short enough that a test of a few seconds sees many heartbeats, long enough not to busy two shared CPU cores.
TEST_HEARTBEAT_MS = 250


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started `FakeDiscord` with discord.py's addresses pointed at it; stopped and restored afterwards."""
    fake = FakeDiscord(heartbeat_interval_ms=TEST_HEARTBEAT_MS)
    await fake.start()
    try:
        with fake.patch_discord():
            yield fake
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def running_bot(
    bot: Any, fake: FakeDiscord, *, timeout: float = 10.0, reconnect: bool = False
) -> AsyncIterator[Any]:
    """Log ``bot`` in to ``fake``, connect it, wait for ``on_ready``; close it and its connect task on exit.

    Errors of the connect task (bad token, a crash in the gateway loop) are raised here rather than lost.
    """
    await bot.login(fake.token)
    connect = asyncio.create_task(bot.connect(reconnect=reconnect), name="fake-discord-bot-connect")
    ready = asyncio.create_task(bot.wait_until_ready())
    try:
        done, _ = await asyncio.wait({connect, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if connect in done:
            connect.result()  # raises what ended the connection
            raise RuntimeError("bot disconnected before becoming ready")
        if ready not in done:
            raise TimeoutError(f"bot not ready within {timeout}s")
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        # connect() returns once the websocket is closed; its exception, if any, fails the test.
        await asyncio.wait_for(connect, timeout)
