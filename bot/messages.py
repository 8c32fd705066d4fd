"""What the bot says about songs: the song embed, list lines, and every reply and refusal of /lyrics,
/favourites and the buttons, kept apart from the flow in the cogs. (/train's texts live beside it, in
bot/exts/training/texts.py.)

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


def song_embed(card: SongCard, *, record: Song | None = None) -> discord.Embed:
    """A song as the bot shows it: the reply to /lyrics and 🎲, or with its stored `record`, /favourites show.

    The text is cut at a line break to fit. A reply's footer holds the settings that reproduce it; the
    full record shows them as fields, with the votes, who asked, when, and the model that wrote it.
    """
    description, cut = fit_lines(escape(card.text), DESCRIPTION_LIMIT)
    embed = discord.Embed(description=description, colour=EMBED_COLOUR)
    footer = []
    if record is None:
        settings = f"temperature {card.temperature:g} · length {card.length} · random seed {card.random_seed}"
        if card.rhyme is not None:
            settings += " · " + rhyme_text(card.rhyme, card.rhyme_group)
        footer.append(settings)
    else:
        _add_record(embed, record)
        footer.append("The same seed, temperature, length and random seed on the same model write this song again.")
    if card.unknown:
        footer.append(cap("seed words the model did not know: " + ", ".join(card.unknown), 300))
    if cut:
        footer.append(f"cut at a line break to fit Discord's {DESCRIPTION_LIMIT:,}-character limit")
    if card.song_id is not None and record is None:
        footer.append(f"song #{card.song_id}")
    embed.set_footer(text=cap("\n".join(footer), FOOTER_LIMIT))
    return embed


def rhyme_text(asked: str, group: str | None) -> str:
    """The footer's word on rhyme: what the song rhymes on, and what was asked when it was not auto."""
    if asked == "off" or group is None:
        return "rhyme off (不押韵)" if asked == "off" else "no rhyme found"
    shown = f"rhyme {rhyme_name(group)}"
    return shown if asked == "auto" else f"{shown}, as {asked}"


def _add_record(embed: discord.Embed, song: Song) -> None:
    embed.title = f"Song #{song.id}"
    embed.add_field(name="Votes", value=str(song.votes))
    embed.add_field(name="Asked by", value=f"<@{song.author_id}>" if song.author_id else "(forgotten)")
    embed.add_field(name="Written", value=discord.utils.format_dt(song.created_at, "f"))
    embed.add_field(name="Seed", value=escape(song.seed) or "(empty)", inline=False)
    embed.add_field(name="Temperature", value=f"{song.temperature:g}")
    embed.add_field(name="Length", value=str(song.length))
    embed.add_field(name="Random seed", value=str(song.random_seed))
    embed.add_field(name="Model", value=f"`{song.bundle_hash}`" if song.bundle_hash else "(not recorded)", inline=False)


def preview(song: Song) -> str:
    """One line of a list: the song's first words, shown literally (no markdown, no mentions)."""
    first = " / ".join(line.strip() for line in song.text.splitlines() if line.strip())
    return escape(cap(first, PREVIEW_CHARS))


def song_line(song: Song, rank: int | None = None) -> str:
    prefix = f"{rank}. " if rank is not None else ""
    return f"{prefix}**#{song.id}** · 👍 {song.votes} · {preview(song)}"


# ---------------------------------------------------------------------------------------------
# refusals and errors, shared by every command and button (sent ephemerally: only the member who asked sees them)


SHUTTING_DOWN = "The bot is restarting (机器人正在重启): ask again in a minute."
GENERATION_FAILED = "Something went wrong while writing your song (出错了): please try again."
TOO_SLOW = "Your song took too long to write (太慢了): the bot is very busy, please try again in a few minutes."
INTERNAL_ERROR = "Something went wrong (出错了). It has been logged; please try again."
UNAVAILABLE = "This button is not available right now (功能暂不可用): try again in a minute."
TRAINER_AWAY = (
    "Training and the corpus are looked after by the bot's trainer process, which did not answer just now"
    " (训练进程暂时没有回应): try again in a minute."
)
# The trainer process found the handed-over command too old to run (this process was slow to take it back).
TRAINER_LATE = (
    "This command reached the bot's trainer process too late to run, so nothing was done"
    " (训练进程收到得太晚，未执行): please run it again."
)
# This process was the trainer, and lost its claim to the database (bot/store/postgres_relay.py).
TRAINER_LOST = (
    "This bot process can no longer train: it lost its claim to be the trainer process (训练权已失去),"
    " so nothing was started or changed. The bot's operator must restart it; `/train status` still answers."
)
# For a member who is not an admin: what it takes, without naming who is one.
ADMIN_ONLY = (
    "Only admins can do that (仅限管理员): members with the Administrator permission in this server, "
    "or users listed in LYRICS_ADMIN_IDS."
)
# For someone who is not one of the bot's owners: the model is shared by every server the bot is in.
OWNER_ONLY = (
    "Only the bot's owners can do that (仅限机器人所有者): the model is shared by every server the bot is in, "
    "so training it belongs to the application's owner and team, the users in LYRICS_ADMIN_IDS, and "
    "the Administrators of the servers in LYRICS_TRAIN_GUILD_IDS."
)


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


def queued(place: int) -> str:
    """What a member whose song waits for a batch sees, edited as the queue moves."""
    return f"排队中 · #{place} in the queue: this message becomes your song when its turn comes."


def cooldown(command: str, seconds: float) -> str:
    """A command that was just used here (discord.py's CommandOnCooldown)."""
    wait = max(1, math.ceil(seconds))
    return f"{command} was just used here (刚刚用过): scroll up for its answer, or try again in {wait} s."


def queue_full(waiting: int, seconds: float) -> str:
    """The one refusal of a burst: the queue is full."""
    return retry_after(f"The queue is full: {waiting} songs are waiting (排队已满)", seconds)


def guild_queue_full(waiting: int, seconds: float) -> str:
    """This server already has its share of the queue waiting; other servers' members still get in."""
    return retry_after(
        f"This server already has {waiting} songs waiting, its share of the queue (本服务器排队已满)", seconds
    )


def cannot_write(reason: object) -> str:
    """The model refused the request itself (e.g. a seed it cannot encode at all)."""
    return f"I couldn't write that: {reason}"


# ---------------------------------------------------------------------------------------------
# /favourites and the buttons under a song


SELF_VOTE = "You asked for this song, so your vote doesn't count (不能给自己的歌投票)."
DELETE_REFUSED = "Only the member who asked for this song, or an admin, can delete it (只有作者或管理员可以删除)."
NO_FAVOURITES = "You have no saved songs yet (还没有收藏): click ⭐ under a song to save it."
NOT_YOUR_LIST = "These are someone else's favourites: use /favourites mine to see yours."
NOT_YOUR_QUESTION = "Only the member who asked to be forgotten can answer this."
TOP_IN_DMS = "Leaderboards are per server (排行榜只在服务器里): use /favourites top in a server."
FORGET_CANCELLED = "Cancelled: nothing was deleted (已取消)."
FAVOURITES_TITLE = "⭐ Your saved songs (我的收藏)"
TOP_FOOTER = "/favourites show id:<n> shows one in full"
TOP_WIDER_FOOTER = (
    "Only you see this one: it also counts songs from channels not everyone here can read · "
    "/favourites show id:<n> shows one in full"
)


def not_found(song_id: int) -> str:
    return (
        f"There is no song #{song_id} here (找不到这首歌): it was deleted, never existed, "
        f"or was written in another server."
    )


def removed_text(song_id: int, by: str | None = None) -> str:
    """The content a song's message is edited to once the song is deleted (public)."""
    return f"🗑️ Song #{song_id} was deleted{f' by {by}' if by else ''} (已删除)."


def saved_text(song_id: int) -> str:
    return f"⭐ Saved song #{song_id} (已收藏): see your saved songs with /favourites mine."


def unsaved_text(song_id: int) -> str:
    return f"Removed song #{song_id} from your saved songs (已取消收藏)."


def not_saved_text(song_id: int) -> str:
    return f"Song #{song_id} is not among your saved songs: see /favourites mine."


def favourites_footer(page: int, pages: int, total: int) -> str:
    return f"page {page + 1} of {pages} · {total} saved · /favourites show id:<n> shows one"


def top_title(period_words: str) -> str:
    return f"🏆 Most-voted songs written {period_words} (排行榜)"


def no_votes_text(period_words: str) -> str:
    return f"No votes yet for songs written {period_words} (还没有投票): click 👍 under a song you like."


def _forget_items(report: ForgetReport) -> list[str]:
    return [
        f"• your {report.votes} vote(s)",
        f"• your {report.favourites} saved song(s) (the saves; the songs stay for whoever wrote them)",
        f"• the {report.songs} song(s) you asked for, and their messages where the bot can still reach them",
        f"• with those songs, the {report.votes_on_songs} vote(s) and {report.saves_of_songs} save(s) other "
        "members gave them",
    ]


CORPUS_RECORDS_NOTE = (
    "Lyrics files you added with /corpus add stay in the training corpus (they are lyrics, not data about you), "
    "but your name and id are taken off their records."
)
FORGOTTEN_SONG = "You asked me to forget you (你已要求删除数据), so this song was dropped: ask again any time."


def forget_question(report: ForgetReport) -> str:
    """The confirmation of forget-me: exactly what goes, and what happens to corpus records."""
    return "\n".join(
        [
            "This deletes everything the bot stores about you, for good (删除你的所有数据):",
            *_forget_items(report),
            "• any song of yours still being written",
            CORPUS_RECORDS_NOTE,
            "It cannot be undone.",
        ]
    )


def forgotten_text(report: ForgetReport, progress: DeletionProgress | None, *, done: bool, corpus_records: int) -> str:
    """What forget-me deleted, after the confirmation. Not `done`: the song messages are still being deleted
    (the bot is stopping, or it takes long); `progress` says how far it got, and a direct message will end it."""
    lines = ["Done (已删除). Deleted:", *_forget_items(report)]
    if corpus_records:
        lines.append(f"Your name and id were taken off the records of {corpus_records} corpus file(s).")
    if report.messages and done and progress is not None:
        lines.extend(_deletion_lines(progress))
    elif report.messages:
        so_far = f" ({progress.settled} done so far, {progress.pending} to go)" if progress is not None else ""
        lines.append(
            f"The {report.messages} message(s) of those songs are being deleted in the background{so_far}, also "
            "after a restart: I will send you a direct message when that is done."
        )
    return "\n".join(lines)


def deletions_done_text(progress: DeletionProgress) -> str:
    """The direct message that ends a forget-me whose song messages took longer than its reply could wait."""
    return "\n".join(["forget-me (删除我的数据): the messages of your songs are done.", *_deletion_lines(progress)])


def _deletion_lines(progress: DeletionProgress) -> list[str]:
    lines = [f"Messages of those songs deleted: {progress.deleted} of {progress.settled}."]
    if progress.unreachable:
        lines.append(
            f"{progress.unreachable} could not be reached (the bot was removed from the channel or server); "
            "a server's moderators can delete them."
        )
    return lines
