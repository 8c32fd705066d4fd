"""How the bot shows songs and its longer replies: the song embed, list lines, and the replies of /lyrics,
/favourites and forget-me that are built from several texts. The words themselves are the catalogues'
(bot/locales/, through bot.i18n), in the member's language; this module puts them together and fits them.

Discord's limits shape everything here: a message holds 2,000 characters, an embed description 4,096
and a footer 2,048, and a song must never be cut in the middle of a line (or of a character).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import discord

from bot import i18n
from bot.i18n import Locale
from bot.store import DeletionProgress, ForgetReport, Song
from model.rhyme import rhyme_name

CONTENT_LIMIT = 2000
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
CUT_MARK = "\n…"
PREVIEW_CHARS = 60  # of a song's text in a list line
EMBED_COLOUR = discord.Colour.dark_teal()
_JOINERS = {"\u200d", "\u20e3"}  # zero-width joiner, combining keycap: the next code point belongs to this character


def escape(text: str) -> str:
    """Show text literally: no markdown, mentions made inert (a zero-width space after the @), links as text.

    The client's allowed_mentions (none) already stops the pings; this also stops "@everyone" from
    *looking* like one. Discord turns "https://..." into a clickable link (and `[x](url)` into a masked one,
    which escape_markdown already defuses); a zero-width space between "https:" and "//" leaves the address
    readable but not clickable, so a seed cannot plant a link in the bot's message.
    """
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    return text.replace("://", ":\u200b//")


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


def cap(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 1 characters and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# one song


@dataclass(frozen=True)
class SongCard:
    """What an embed shows about one song: its text and the settings that write it again."""

    text: str  # the seed as typed, then the generated lines, joined by "\n"
    temperature: float
    length: int
    random_seed: int
    unknown: Sequence[str] = ()  # seed words the model did not know
    song_id: int | None = None  # None when the song could not be stored
    rhyme: str | None = None  # what the member asked ("auto", "off" or a character); None: not known
    rhyme_group: str | None = None  # the rhyme group most lines end in (model.rhyme.GROUPS)

    @classmethod
    def of(cls, song: Song) -> SongCard:
        return cls(
            text=song.text,
            temperature=song.temperature,
            length=song.length,
            random_seed=song.random_seed,
            song_id=song.id,
        )


def song_embed(card: SongCard, locale: Locale, *, record: Song | None = None) -> discord.Embed:
    """A song as the bot shows it: the reply to /lyrics and 🎲, or with its stored `record`, /favourites show.

    The text is cut at a line break to fit. A reply's footer holds the settings that reproduce it; the
    full record shows them as fields, with the votes, who asked, when, and the model that wrote it. The
    words around the song are in `locale`'s language; the song itself never is translated.
    """
    description, cut = fit_lines(escape(card.text), DESCRIPTION_LIMIT)
    embed = discord.Embed(description=description, colour=EMBED_COLOUR)
    footer = []
    if record is None:
        settings = i18n.text(
            locale, "song.settings", temperature=card.temperature, length=card.length, random_seed=card.random_seed
        )
        if card.rhyme is not None:
            settings += " · " + rhyme_text(locale, card.rhyme, card.rhyme_group)
        footer.append(settings)
    else:
        _add_record(embed, record, locale)
        footer.append(i18n.text(locale, "song.replay_note"))
    if card.unknown:
        footer.append(cap(i18n.text(locale, "song.unknown_words", words=", ".join(card.unknown)), 300))
    if cut:
        footer.append(i18n.text(locale, "song.cut", limit=DESCRIPTION_LIMIT))
    if card.song_id is not None and record is None:
        footer.append(i18n.text(locale, "song.number", id=card.song_id))
    embed.set_footer(text=cap("\n".join(footer), FOOTER_LIMIT))
    return embed


def rhyme_text(locale: Locale, asked: str, group: str | None) -> str:
    """The footer's word on rhyme: what the song rhymes on, and what was asked when it was not auto."""
    if asked == "off" or group is None:
        return i18n.text(locale, "song.rhyme_off" if asked == "off" else "song.rhyme_none")
    if asked == "auto":
        return i18n.text(locale, "song.rhyme", group=rhyme_name(group))
    return i18n.text(locale, "song.rhyme_as", group=rhyme_name(group), asked=asked)


def _add_record(embed: discord.Embed, song: Song, locale: Locale) -> None:
    def field(key: str, value: str, *, inline: bool = True) -> None:
        embed.add_field(name=i18n.text(locale, f"song.{key}"), value=value, inline=inline)

    embed.title = i18n.text(locale, "song.title", id=song.id)
    field("votes", str(song.votes))
    field("asked_by", f"<@{song.author_id}>" if song.author_id else i18n.text(locale, "song.forgotten"))
    field("written", discord.utils.format_dt(song.created_at, "f"))
    field("seed", escape(song.seed) or i18n.text(locale, "song.empty"), inline=False)
    field("temperature", f"{song.temperature:g}")
    field("length", str(song.length))
    field("random_seed", str(song.random_seed))
    model = f"`{song.bundle_hash}`" if song.bundle_hash else i18n.text(locale, "song.not_recorded")
    field("model", model, inline=False)


def preview(song: Song) -> str:
    """One line of a list: the song's first words, shown literally (no markdown, no mentions)."""
    first = " / ".join(line.strip() for line in song.text.splitlines() if line.strip())
    return escape(cap(first, PREVIEW_CHARS))


def song_line(song: Song, rank: int | None = None) -> str:
    prefix = f"{rank}. " if rank is not None else ""
    return f"{prefix}**#{song.id}** · 👍 {song.votes} · {preview(song)}"


# ---------------------------------------------------------------------------------------------
# refusals and errors, shared by every command and button (sent ephemerally: only the member who asked sees them)


def no_model(locale: Locale, corpus: Path, model: Path, *, train_command: bool = False) -> str:
    """Why /lyrics cannot work yet, and how an admin fixes it."""
    why = i18n.text(locale, "errors.no_model", corpus=corpus, model=model)
    return why + i18n.text(locale, "errors.no_model_train") if train_command else why


def retry_after(locale: Locale, reason: str, seconds: float) -> str:
    """A busy refusal: what is going on and when to ask again (always a number of seconds, at least 1)."""
    return i18n.text(locale, "errors.retry_after", reason=reason, seconds=_seconds(seconds))


def cooldown(locale: Locale, command: str, seconds: float) -> str:
    """A command that was just used here (discord.py's CommandOnCooldown)."""
    return i18n.text(locale, "errors.cooldown", command=command, seconds=_seconds(seconds))


def queue_full(locale: Locale, waiting: int, seconds: float, *, guild: bool = False) -> str:
    """The one refusal of a burst: the queue is full, or this server already has its share of it waiting
    (other servers' members still get in)."""
    reason = i18n.text(locale, "errors.guild_queue_full" if guild else "errors.queue_full", waiting=waiting)
    return retry_after(locale, reason, seconds)


def _seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


# ---------------------------------------------------------------------------------------------
# /favourites and forget-me


def removed_text(locale: Locale, song_id: int, by: str | None = None) -> str:
    """The content a song's message is edited to once the song is deleted (public); `by`: a key's last part,
    "author" or "admin"."""
    if by is None:
        return i18n.text(locale, "favourites.removed", id=song_id)
    return i18n.text(locale, "favourites.removed_by", id=song_id, by=i18n.text(locale, f"favourites.by_{by}"))


def _forget_items(locale: Locale, report: ForgetReport) -> list[str]:
    return [
        i18n.text(locale, "forget.votes", votes=report.votes),
        i18n.text(locale, "forget.favourites", favourites=report.favourites),
        i18n.text(locale, "forget.songs", songs=report.songs),
        i18n.text(locale, "forget.their_votes", votes=report.votes_on_songs, saves=report.saves_of_songs),
    ]


def forget_question(locale: Locale, report: ForgetReport) -> str:
    """The confirmation of forget-me: exactly what goes, and what happens to corpus records."""
    return "\n".join(
        [
            i18n.text(locale, "forget.question"),
            *_forget_items(locale, report),
            i18n.text(locale, "forget.in_progress"),
            i18n.text(locale, "forget.corpus_note"),
            i18n.text(locale, "forget.no_undo"),
        ]
    )


def forgotten_text(
    locale: Locale, report: ForgetReport, progress: DeletionProgress | None, *, done: bool, corpus_records: int
) -> str:
    """What forget-me deleted, after the confirmation. Not `done`: the song messages are still being deleted
    (the bot is stopping, or it takes long); `progress` says how far it got, and a direct message will end it."""
    lines = [i18n.text(locale, "forget.done"), *_forget_items(locale, report)]
    if corpus_records:
        lines.append(i18n.text(locale, "forget.corpus_records", count=corpus_records))
    if report.messages and done and progress is not None:
        lines.extend(_deletion_lines(locale, progress))
    elif report.messages:
        so_far = (
            i18n.text(locale, "forget.so_far", settled=progress.settled, pending=progress.pending)
            if progress is not None
            else ""
        )
        lines.append(i18n.text(locale, "forget.in_background", count=report.messages, so_far=so_far))
    return "\n".join(lines)


def deletions_done_text(locale: Locale, progress: DeletionProgress) -> str:
    """The direct message that ends a forget-me whose song messages took longer than its reply could wait."""
    return "\n".join([i18n.text(locale, "forget.messages_done"), *_deletion_lines(locale, progress)])


def _deletion_lines(locale: Locale, progress: DeletionProgress) -> list[str]:
    lines = [i18n.text(locale, "forget.deleted", deleted=progress.deleted, settled=progress.settled)]
    if progress.unreachable:
        lines.append(i18n.text(locale, "forget.unreachable", count=progress.unreachable))
    return lines
