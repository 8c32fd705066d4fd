"""One way to answer the member who asked: `tell`. Used for refusals, short answers and errors everywhere.

Discord allows one initial response per interaction, then follow-ups; which call answers depends on what
was sent before, and getting it wrong is an error the member sees as "This interaction failed".
"""

from __future__ import annotations

import discord
from discord import InteractionResponseType

from bot.messages import CONTENT_LIMIT


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
