"""What the bot says: the song embed and the texts of its refusals, kept apart from the flow in the cogs.

Discord's limits shape everything here: an embed description holds 4,096 characters and a footer
2,048, and a song must never be cut in the middle of a line (or of a character).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import discord

NO_MENTIONS = discord.AllowedMentions.none()  # passed on every message: a seed like "@everyone" pings nobody
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
CUT_MARK = "\n…"
EMBED_COLOUR = discord.Colour.dark_teal()
_JOINERS = {"\u200d", "\u20e3"}  # zero-width joiner, combining keycap: the next code point belongs to this character


def escape(text: str) -> str:
    """Show text literally: no markdown, and mentions made inert (a zero-width space after the @).

    allowed_mentions already stops the pings; this also stops "@everyone" from *looking* like one.
    """
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def fit_lines(text: str, limit: int, mark: str = CUT_MARK) -> tuple[str, bool]:
    """`text` if it fits in `limit` characters; else its longest prefix of whole lines plus `mark`.

    Returns (text, was_cut). A first line longer than the limit is cut between two characters,
    never inside one (a combining accent or an emoji sequence stays with its base).
    """
    if len(text) <= limit:
        return text, False
    budget = limit - len(mark)
    if budget <= 0:
        raise ValueError(f"limit {limit} leaves no room for the cut mark {mark!r}")
    end = text.rfind("\n", 0, budget + 1)  # the last line break that leaves the kept part within budget
    if end <= 0:
        end = _character_boundary(text, budget)
    kept = text[:end].rstrip("\n")
    if kept.endswith("\\") and not kept.endswith("\\\\"):  # don't leave half of an escape sequence
        kept = kept[:-1]
    return kept + mark, True


def _character_boundary(text: str, index: int) -> int:
    """The largest index <= `index` that does not split a user-perceived character."""
    while index > 0 and (
        unicodedata.combining(text[index])
        or text[index] in _JOINERS
        or text[index - 1] in _JOINERS
        or unicodedata.category(text[index]) == "Mn"
        or 0xFE00 <= ord(text[index]) <= 0xFE0F  # variation selectors
    ):
        index -= 1
    return index


@dataclass(frozen=True)
class SongView:
    """Everything the reply shows about one song."""

    text: str  # the seed as typed, then the generated lines, joined by "\n"
    temperature: float
    length: int
    random_seed: int
    unknown: Sequence[str] = ()  # seed words the model did not know
    song_id: int | None = None  # None when the song could not be stored


def song_embed(song: SongView) -> discord.Embed:
    """The reply to /lyrics: the song in the description, the settings that reproduce it in the footer."""
    description, cut = fit_lines(escape(song.text), DESCRIPTION_LIMIT)
    footer = [f"temperature {song.temperature:g} · length {song.length} · random seed {song.random_seed}"]
    if song.unknown:
        footer.append(_cap("seed words the model did not know: " + ", ".join(song.unknown), 300))
    if cut:
        footer.append(f"cut at a line break to fit Discord's {DESCRIPTION_LIMIT:,}-character limit")
    if song.song_id is not None:
        footer.append(f"song #{song.song_id}")
    embed = discord.Embed(description=description, colour=EMBED_COLOUR)
    embed.set_footer(text=_cap("\n".join(footer), FOOTER_LIMIT))
    return embed


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# refusals (sent ephemerally: only the member who asked sees them)


def no_model(corpus: Path, model: Path, *, train_command: bool = False) -> str:
    """Why /lyrics cannot work yet, and how an admin fixes it."""
    how = (
        f"An admin can train one on the bot's machine:\n"
        f"```\npython -m model train --corpus {corpus} --out {model}\n```"
        f"then restart the bot."
    )
    if train_command:
        how += " Or run `/train start` here."
    return f"I can't write lyrics yet: no model has been trained (还没有训练好的模型).\n{how}"


def retry_after(reason: str, seconds: float) -> str:
    """A busy refusal: what is going on and when to ask again (always a number of seconds, at least 1)."""
    return f"{reason}: try again in {max(1, math.ceil(seconds))} s."


SHUTTING_DOWN = "The bot is restarting (机器人正在重启): ask again in a minute."
INTERNAL_ERROR = "Something went wrong while writing this song (出错了). It has been logged; please try again."
