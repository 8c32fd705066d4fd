"""bot/replies.py: `tell`, `answer`, `acknowledge`, `update` and `defer_if_slow` answer an interaction the one
right way for what was sent before, on interactions the real discord.py parses from the fake Discord.

A small commands.Bot (not the product bot) with one command and one button per case: what it sends first
is the case, the helper under test answers second, and the fake records what reached "Discord".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.messages import CONTENT_LIMIT
from bot.replies import acknowledge, answer, defer_if_slow, tell, update
from tests.fakediscord import FakeDiscord, running_bot

EPHEMERAL = 1 << 6
SLOW = 0.05  # defer_if_slow's timer in these tests: work that sleeps past it gets the interaction deferred


async def slow_work(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


class Panel(discord.ui.View):
    """A message with buttons whose clicks `update` it, fast or after defer_if_slow deferred them."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Fast", custom_id="replies:fast")
    async def fast(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        result = await defer_if_slow(interaction, slow_work(0), after=SLOW)
        await update(interaction, content=f"fast: {result}")

    @discord.ui.button(label="Slow", custom_id="replies:slow")
    async def slow(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        result = await defer_if_slow(interaction, slow_work(SLOW * 4), after=SLOW)
        await update(interaction, content=f"slow: {result}")

    @discord.ui.button(label="Refuse", custom_id="replies:refuse")
    async def refuse(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await tell(interaction, "not for you")  # a click answered privately, the message left as it is


def make_bot() -> commands.Bot:
    bot = commands.Bot(
        command_prefix="!",
        intents=discord.Intents.default(),
        guild_ready_timeout=0.1,
        allowed_mentions=discord.AllowedMentions.none(),
    )

    @bot.tree.command(description="tell, after the given first step")
    @app_commands.choices(
        first=[app_commands.Choice(name=name, value=name) for name in ("nothing", "deferred", "answered", "long")]
    )
    async def told(interaction: discord.Interaction, first: str) -> None:
        if first == "deferred":
            await acknowledge(interaction, ephemeral=True)
        elif first == "answered":
            await interaction.response.send_message("everyone sees this")
        await tell(interaction, "x" * (CONTENT_LIMIT + 50) if first == "long" else "only you")

    @bot.tree.command(description="answer, after acknowledge or not")
    async def answered(interaction: discord.Interaction, deferred: bool) -> None:
        if deferred:
            await acknowledge(interaction, ephemeral=False)
            await acknowledge(interaction, ephemeral=False)  # a second acknowledge changes nothing
        await answer(interaction, "for the channel")

    @bot.tree.command(description="defer_if_slow around work of the given length")
    async def work(interaction: discord.Interaction, seconds: float) -> None:
        result = await defer_if_slow(interaction, slow_work(seconds), thinking=True, ephemeral=True, after=SLOW)
        await tell(interaction, result)

    @bot.tree.command(description="A message with buttons")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("panel", view=Panel())

    async def setup_hook() -> None:
        bot.add_view(Panel())
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


@pytest.fixture
async def bot(fake_discord: FakeDiscord) -> AsyncIterator[commands.Bot]:
    async with running_bot(make_bot(), fake_discord) as running:
        yield running
    assert fake_discord.violations == [] and fake_discord.unknown_routes == []


# ---------------------------------------------------------------------------------------------
# tell: privately, whatever was sent before


async def test_tell_answers_a_fresh_interaction_ephemerally(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("told", {"first": "nothing"})
    message = await inter.wait_final()
    assert inter.response_type == 4 and message.content == "only you" and message.ephemeral


async def test_tell_fills_the_placeholder_of_a_deferred_interaction(
    fake_discord: FakeDiscord, bot: commands.Bot
) -> None:
    inter = await fake_discord.send_slash_command("told", {"first": "deferred"})
    message = await inter.wait_final()
    assert inter.response_type == 5 and inter.callbacks[0]["data"]["flags"] & EPHEMERAL
    assert message is inter.original and message.content == "only you" and message.ephemeral
    assert inter.followups == []


async def test_tell_after_a_public_answer_is_a_private_followup(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("told", {"first": "answered"})
    await inter.wait_final(until=lambda i: i.followups)
    assert inter.response_type == 4 and inter.original.content == "everyone sees this" and not inter.original.ephemeral
    [followup] = inter.followups
    assert followup.content == "only you" and followup.ephemeral


async def test_tell_cuts_a_text_to_what_discord_accepts(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("told", {"first": "long"})
    message = await inter.wait_final()
    assert len(message.content) == CONTENT_LIMIT  # a longer one would be refused, and the member told nothing


# ---------------------------------------------------------------------------------------------
# answer: for the whole channel


async def test_answer_is_public_whether_or_not_it_was_deferred(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    fresh = await fake_discord.send_slash_command("answered", {"deferred": False})
    message = await fresh.wait_final()
    assert fresh.response_type == 4 and message.content == "for the channel" and not message.ephemeral
    deferred = await fake_discord.send_slash_command("answered", {"deferred": True})
    message = await deferred.wait_final()
    assert [c["type"] for c in deferred.callbacks] == [5]  # acknowledged once
    assert message is deferred.original and message.content == "for the channel" and not message.ephemeral


# ---------------------------------------------------------------------------------------------
# defer_if_slow: acknowledged in time, and only when needed


async def test_fast_work_is_answered_without_a_defer(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    inter = await fake_discord.send_slash_command("work", {"seconds": 0.0})
    message = await inter.wait_final()
    assert inter.response_type == 4 and message.content == "slept 0.0" and message.ephemeral


async def test_slow_work_is_deferred_first_and_its_answer_fills_the_placeholder(
    fake_discord: FakeDiscord, bot: commands.Bot
) -> None:
    inter = await fake_discord.send_slash_command("work", {"seconds": SLOW * 4})
    message = await inter.wait_final()
    assert inter.response_type == 5 and inter.callbacks[0]["elapsed"] < 1
    assert message is inter.original and message.content == f"slept {SLOW * 4}" and message.ephemeral


# ---------------------------------------------------------------------------------------------
# update: the message a button is on


async def test_update_edits_the_clicked_message_fast_or_after_a_silent_defer(
    fake_discord: FakeDiscord, bot: commands.Bot
) -> None:
    shown = await fake_discord.send_slash_command("panel")
    message = await shown.wait_final()

    fast = await fake_discord.click_button(message, "replies:fast")
    assert (await fast.wait_response())["type"] == 7  # the edit is the response itself
    await fake_discord.wait_until(lambda: message.content.startswith("fast"), what="the fast edit")
    assert message.content == "fast: slept 0"

    slow = await fake_discord.click_button(message, "replies:slow")
    assert (await slow.wait_response())["type"] == 6  # deferred without "thinking…": no new message
    assert await slow.wait_final() is message
    await fake_discord.wait_until(lambda: message.content.startswith("slow"), what="the slow edit")
    assert message.content == f"slow: slept {SLOW * 4}" and message.custom_ids() == [
        "replies:fast",
        "replies:slow",
        "replies:refuse",
    ]


async def test_tell_on_a_click_leaves_the_message_as_it_is(fake_discord: FakeDiscord, bot: commands.Bot) -> None:
    shown = await fake_discord.send_slash_command("panel")
    message = await shown.wait_final()
    refused = await fake_discord.click_button(message, "replies:refuse")
    reply = await refused.wait_final()
    assert refused.response_type == 4 and reply.ephemeral and reply.content == "not for you"
    assert message.content == "panel"
