"""How the bot answers an interaction: `tell` (the one way to answer the member who asked: refusals, short
answers, errors), `update` (change the message a button is on) and `defer_if_slow` (acknowledge in time).

Discord allows one initial response per interaction, then follow-ups; which call answers depends on what
was sent before, and getting it wrong is an error the member sees as "This interaction failed". An
interaction not acknowledged within 3 seconds fails the same way, so work that may be slow (the database
under load) is raced against a short timer and the interaction deferred if the timer wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import discord
from discord import InteractionResponseType

from bot.messages import CONTENT_LIMIT

log = logging.getLogger(__name__)

T = TypeVar("T")
SLOW_S = 1.0  # work still running after this long gets the interaction deferred (Discord allows 3 s)


async def tell(interaction: discord.Interaction, text: str) -> None:
    """Answer `interaction` with `text`, ephemerally where Discord still lets us choose.

    Not answered yet: an ephemeral message. Deferred with "thinking…": the placeholder becomes `text`
    (it is ephemeral if the defer was). Answered otherwise: an ephemeral follow-up.
    """
    text = text[:CONTENT_LIMIT]
    response = interaction.response
    if not response.is_done():
        await response.send_message(text, ephemeral=True)
    elif response.type is InteractionResponseType.deferred_channel_message:
        await interaction.edit_original_response(content=text)
    else:
        await interaction.followup.send(text, ephemeral=True)


async def acknowledge(interaction: discord.Interaction, *, ephemeral: bool) -> None:
    """Defer with "thinking…" unless the interaction is answered already (a handed-over command is deferred
    by the relay before it runs: bot/relay.py); `tell` then fills the placeholder in either case."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)


async def answer(interaction: discord.Interaction, text: str) -> None:
    """Answer with a message everyone in the channel sees: the response, or the deferred placeholder."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text)
    else:
        await interaction.edit_original_response(content=text)


async def update(interaction: discord.Interaction, **fields: Any) -> None:
    """Edit the message the clicked component is on (content, embed, view...): in the interaction's response
    if it is not answered yet, else (after `defer_if_slow` deferred it) through the interaction's token."""
    if not interaction.response.is_done():
        await interaction.response.edit_message(**fields)
    else:
        await interaction.edit_original_response(**fields)


async def defer_if_slow(
    interaction: discord.Interaction,
    work: Awaitable[T],
    *,
    thinking: bool = False,
    ephemeral: bool = False,
    after: float = SLOW_S,
) -> T:
    """Await `work`; if it is still running after `after` seconds, defer the interaction meanwhile.

    For a click, thinking=False acknowledges it silently (the message it is on is `update`d later), and
    thinking=True shows "thinking…" as the start of a new message. A command always shows "thinking…",
    only to the member who asked if `ephemeral`. Either way `tell` and `update` answer correctly afterwards.
    The work is never cancelled here: a vote that was counted stays counted.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=after)
    if not done and not interaction.response.is_done():
        try:
            await interaction.response.defer(thinking=thinking, ephemeral=ephemeral)
        except discord.HTTPException as exc:  # too late already; the answer will fail too, the work still counts
            log.warning("could not defer a slow interaction: %s", exc)
    return await task
