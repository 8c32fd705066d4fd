"""Votes, saved songs and leaderboards: the buttons under every song and the /favourites commands.

    👍 vote (label: the count)   ⭐ save / unsave   🎲 again (same seed and settings, new random seed)
    🗑 delete (the member who asked for the song, or an admin)

    /favourites mine | top [period] | show id | remove id | forget-me

The buttons are the persistent `DynamicItem`s of bot/views.py; this cog is their `ButtonHandler`.
A click on a button under a song is answered within Discord's 3 seconds either by updating the message
in place (callback type 7: the new vote count, or "deleted") or with an ephemeral note; 🎲 defers and
replies with a new song later, as /lyrics does.

Songs are visible where they were written: in their guild, or in their DM channel. A song id from
elsewhere is answered exactly like an id that does not exist, so nothing leaks across servers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages, views
from bot.exts.lyrics import DM_GUILD_ID, Lyrics
from bot.permissions import is_admin
from bot.store import SelfVoteError, Song, SongNotFoundError
from bot.views import ForgetChoice, SongAction

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

NO_MENTIONS = messages.NO_MENTIONS
PAGE_SIZE = 5  # songs per page of /favourites mine
TOP_LIMIT = 10  # songs on a leaderboard
PREVIEW_CHARS = 60  # of a song's text in a list line
SONG_ID_MAX = 2**53  # the largest integer option Discord accepts; ids never get near it
Period = Literal["week", "month", "all"]
# How far back a leaderboard looks (None: no limit), and how its title says so.
PERIODS: dict[str, tuple[timedelta | None, str]] = {
    "week": (timedelta(days=7), "this week"),
    "month": (timedelta(days=30), "this month"),
    "all": (None, "so far"),
}

# ---------------------------------------------------------------------------------------------
# what the cog says (ephemeral unless noted)


def not_found(song_id: int) -> str:
    return (f"There is no song #{song_id} here (找不到这首歌): it was deleted, never existed, "
            f"or was written in another server.")


def removed_text(song_id: int, by: str | None = None) -> str:
    """The content a song's message is edited to once the song is deleted (public)."""
    return f"🗑️ Song #{song_id} was deleted{f' by {by}' if by else ''} (已删除)."


SELF_VOTE = "You asked for this song, so your vote doesn't count (不能给自己的歌投票)."
DELETE_REFUSED = "Only the member who asked for this song, or an admin, can delete it (只有作者或管理员可以删除)."
NO_FAVOURITES = "You have no saved songs yet (还没有收藏): click ⭐ under a song to save it."
NOT_YOUR_LIST = "These are someone else's favourites: use /favourites mine to see yours."
NOT_YOUR_QUESTION = "Only the member who asked to be forgotten can answer this."
TOP_IN_DMS = "Leaderboards are per server (排行榜只在服务器里): use /favourites top in a server."
FORGET_QUESTION = (
    "This deletes everything the bot stores about you (删除你的所有数据): your votes and your saved songs "
    "are deleted, and the songs you asked for stay but no longer name you. It cannot be undone.")
FORGET_CANCELLED = "Cancelled: nothing was deleted (已取消)."
NO_LYRICS = "Writing songs is not available right now (写歌功能暂不可用): try again in a minute."


def forgotten_text(votes: int, favourites: int, songs: int) -> str:
    return (f"Done (已删除): {votes} vote(s) and {favourites} saved song(s) deleted; "
            f"{songs} song(s) you asked for no longer name you.")


def preview(song: Song) -> str:
    """One line of a list: the song's first words, shown literally (no markdown, no mentions)."""
    first = " / ".join(line.strip() for line in song.text.splitlines() if line.strip())
    if len(first) > PREVIEW_CHARS:
        first = first[: PREVIEW_CHARS - 1] + "…"
    return messages.escape(first)


def song_line(song: Song, rank: int | None = None) -> str:
    prefix = f"{rank}. " if rank is not None else ""
    return f"{prefix}**#{song.id}** · 👍 {song.votes} · {preview(song)}"


def song_details(song: Song) -> discord.Embed:
    """/favourites show: the whole song, its votes, and everything that reproduces it."""
    text, cut = messages.fit_lines(messages.escape(song.text), messages.DESCRIPTION_LIMIT)
    embed = discord.Embed(title=f"Song #{song.id}", description=text, colour=messages.EMBED_COLOUR)
    embed.add_field(name="Votes", value=str(song.votes))
    embed.add_field(name="Asked by", value=f"<@{song.author_id}>" if song.author_id else "(forgotten)")
    embed.add_field(name="Written", value=discord.utils.format_dt(song.created_at, "f"))
    embed.add_field(name="Seed", value=messages.escape(song.seed) or "(empty)", inline=False)
    embed.add_field(name="Temperature", value=f"{song.temperature:g}")
    embed.add_field(name="Length", value=str(song.length))
    embed.add_field(name="Random seed", value=str(song.random_seed))
    embed.add_field(name="Model", value=f"`{song.bundle_hash}`" if song.bundle_hash else "(not recorded)",
                    inline=False)
    footer = "The same seed, temperature, length and random seed on the same model write this song again."
    if cut:
        footer += f"\nCut at a line break to fit Discord's {messages.DESCRIPTION_LIMIT:,}-character limit."
    embed.set_footer(text=footer)
    return embed


# ---------------------------------------------------------------------------------------------
# keeping the vote label right when clicks overlap


@dataclass
class Burst:
    """Updates of one song's message whose handling overlaps in time."""

    running: int = 0
    overlapped: bool = False
    last: discord.Interaction | None = None  # a click answered by editing the message: its token edits it again


class LabelSync:
    """Makes the vote label end up equal to the stored count, without making clicks wait for each other.

    Each click answers with the count its own toggle saw, so the message shows whichever answer
    reached Discord last. When updates of a song never overlap (from just before the toggle until
    Discord confirmed the edit), toggles and edits happen in the same order and the label is right.
    When some did overlap, the label may be stale, so the last of them re-reads the count and edits
    the message once more (itself an update: overlapping clicks lead to one more refresh).
    """

    def __init__(self, refresh: Callable[[int, discord.Interaction], Awaitable[None]]) -> None:
        self._refresh = refresh
        self._bursts: dict[int, Burst] = {}

    @asynccontextmanager
    async def update(self, song_id: int) -> AsyncIterator[Burst]:
        """Wrap one update of the song's message; set `burst.last` once the message was edited."""
        burst = self._bursts.setdefault(song_id, Burst())
        if burst.running:
            burst.overlapped = True
        burst.running += 1
        try:
            yield burst
        finally:
            burst.running -= 1
            if burst.running == 0:
                del self._bursts[song_id]
                if burst.overlapped and burst.last is not None:
                    await self._refresh_once(song_id, burst.last)

    async def _refresh_once(self, song_id: int, interaction: discord.Interaction) -> None:
        async with self.update(song_id) as burst:
            await self._refresh(song_id, interaction)
            burst.last = interaction


# ---------------------------------------------------------------------------------------------
# the cog


class Favourites(commands.GroupCog, group_name="favourites",
                 group_description="收藏与排行榜 · Your saved songs and the server's most-voted ones"):
    """The /favourites commands, and the handler of every button in bot/views.py."""

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        self.labels = LabelSync(self._refresh_song_message)

    # ---- helpers

    async def _visible_song(self, interaction: discord.Interaction, song_id: int) -> Song | None:
        """The song if it belongs where the interaction happens (its guild; in DMs, its DM channel)."""
        song = await self.bot.store.get_song(song_id, guild_id=interaction.guild_id or DM_GUILD_ID)
        if song is not None and interaction.guild_id is None and song.channel_id != interaction.channel_id:
            return None  # another member's DM song
        return song

    # ---- the buttons under a song

    async def on_song_button(self, interaction: discord.Interaction, action: SongAction, song_id: int) -> None:
        if self.bot.shutting_down:
            await _tell(interaction, messages.SHUTTING_DOWN)
            return
        if action is SongAction.AGAIN:
            await self._again(interaction, song_id)  # /lyrics' own flow marks itself busy
            return
        handle = {SongAction.VOTE: self._vote, SongAction.SAVE: self._save, SongAction.DELETE: self._delete}[action]
        async with self.bot.busy():  # a shutdown lets the click finish before the store closes
            await handle(interaction, song_id)

    async def _vote(self, interaction: discord.Interaction, song_id: int) -> None:
        async with self.labels.update(song_id) as burst:
            if await self._visible_song(interaction, song_id) is None:
                await _tell(interaction, not_found(song_id))
                return
            try:
                result = await self.bot.store.toggle_vote(song_id, interaction.user.id)
            except SelfVoteError:
                await _tell(interaction, SELF_VOTE)
                return
            except SongNotFoundError:  # deleted since the check above
                await _tell(interaction, not_found(song_id))
                return
            # One callback (type 7) both acknowledges the click and shows the new count.
            await interaction.response.edit_message(view=views.song_view(song_id, votes=result.count),
                                                    allowed_mentions=NO_MENTIONS)
            burst.last = interaction

    async def _save(self, interaction: discord.Interaction, song_id: int) -> None:
        """A first click saves the song for the clicker, the next one unsaves it."""
        if await self._visible_song(interaction, song_id) is None:
            await _tell(interaction, not_found(song_id))
            return
        user_id = interaction.user.id
        try:
            saved = await self.bot.store.add_favourite(user_id, song_id)
        except SongNotFoundError:
            await _tell(interaction, not_found(song_id))
            return
        if saved:
            text = f"⭐ Saved song #{song_id} (已收藏): see your saved songs with /favourites mine."
        else:
            await self.bot.store.remove_favourite(user_id, song_id)
            text = f"Removed song #{song_id} from your saved songs (已取消收藏)."
        await _tell(interaction, text)

    async def _delete(self, interaction: discord.Interaction, song_id: int) -> None:
        song = await self._visible_song(interaction, song_id)
        if song is None:
            await _tell(interaction, not_found(song_id))
            return
        is_author = song.author_id is not None and song.author_id == interaction.user.id
        if not is_author and not is_admin(interaction, self.bot.settings):
            await _tell(interaction, DELETE_REFUSED)
            return
        async with self.labels.update(song_id) as burst:  # a vote click in flight must not put the buttons back
            if not await self.bot.store.delete_song(song_id):
                await _tell(interaction, not_found(song_id))  # someone else deleted it a moment ago
                return
            log.info("song %d deleted by user %d (%s)", song_id, interaction.user.id,
                     "author" if is_author else "admin")
            await interaction.response.edit_message(
                content=removed_text(song_id, "its author" if is_author else "an admin"),
                embed=None, view=None, allowed_mentions=NO_MENTIONS)
            burst.last = interaction

    async def _again(self, interaction: discord.Interaction, song_id: int) -> None:
        """🎲: the same seed, temperature and length with a new random seed, as a new reply with its own buttons."""
        song = await self._visible_song(interaction, song_id)
        if song is None:
            await _tell(interaction, not_found(song_id))
            return
        lyrics = self.bot.get_cog(Lyrics.__cog_name__)
        if not isinstance(lyrics, Lyrics):
            await _tell(interaction, NO_LYRICS)
            return
        await lyrics.write(interaction, song.seed, song.temperature, song.length)

    async def _refresh_song_message(self, song_id: int, interaction: discord.Interaction) -> None:
        """Show the song's stored state on its message (see LabelSync), through a click that edited it."""
        song = await self.bot.store.get_song(song_id)
        try:
            if song is None:
                await interaction.edit_original_response(content=removed_text(song_id), embed=None, view=None,
                                                         allowed_mentions=NO_MENTIONS)
            else:
                await interaction.edit_original_response(view=views.song_view(song_id, votes=song.votes),
                                                         allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:  # the label stays a little off; the next click fixes it
            log.warning("could not refresh the message of song %d: %s", song_id, exc)

    # ---- the pager and the forget-me question

    async def on_favourites_page(self, interaction: discord.Interaction, owner_id: int, page: int) -> None:
        if interaction.user.id != owner_id:
            await _tell(interaction, NOT_YOUR_LIST)
            return
        async with self.bot.busy():
            shown = await self._favourites_page(owner_id, page)
        if shown is None:  # unsaved everything since the list was shown
            await interaction.response.edit_message(content=NO_FAVOURITES, embed=None, view=None,
                                                    allowed_mentions=NO_MENTIONS)
            return
        embed, pager = shown
        await interaction.response.edit_message(embed=embed, view=pager, allowed_mentions=NO_MENTIONS)

    async def _favourites_page(self, user_id: int, page: int) -> tuple[discord.Embed, discord.ui.View | None] | None:
        """Page `page` (0-based, clamped to the last one) of the user's saved songs, newest first."""
        total = await self.bot.store.count_favourites(user_id)
        if total == 0:
            return None
        pages = math.ceil(total / PAGE_SIZE)
        page = min(max(page, 0), pages - 1)
        songs = await self.bot.store.list_favourites(user_id, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
        embed = discord.Embed(title="⭐ Your saved songs (我的收藏)", colour=messages.EMBED_COLOUR,
                              description="\n".join(song_line(song) for song in songs))
        embed.set_footer(text=f"page {page + 1} of {pages} · {total} saved · /favourites show id:<n> shows one")
        # Songs saved from another server are listed too (they are the member's), but /favourites
        # show only opens songs of the server it is used in.
        return embed, views.pager_view(user_id, page, pages)

    async def on_forget_choice(self, interaction: discord.Interaction, owner_id: int, choice: ForgetChoice) -> None:
        if interaction.user.id != owner_id:
            await _tell(interaction, NOT_YOUR_QUESTION)
            return
        if choice is ForgetChoice.CANCEL:
            await interaction.response.edit_message(content=FORGET_CANCELLED, view=None,
                                                    allowed_mentions=NO_MENTIONS)
            return
        async with self.bot.busy():
            report = await self.bot.store.forget_user(owner_id)
        log.info("forgot user %d: %s", owner_id, report)
        await interaction.response.edit_message(
            content=forgotten_text(report.votes_removed, report.favourites_removed, report.songs_anonymised),
            view=None, allowed_mentions=NO_MENTIONS)

    # ---- /favourites ...

    @app_commands.command(name="mine", description="我的收藏 · Your saved songs, newest first")
    async def mine(self, interaction: discord.Interaction) -> None:
        shown = await self._favourites_page(interaction.user.id, 0)
        if shown is None:
            await _tell(interaction, NO_FAVOURITES)
            return
        embed, pager = shown
        extra = {"view": pager} if pager is not None else {}
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)

    @app_commands.command(name="top", description="排行榜 · This server's most-voted songs")
    @app_commands.describe(period="哪段时间 · Songs written this week, this month, or ever (default: all)")
    async def top(self, interaction: discord.Interaction, period: Period = "all") -> None:
        if interaction.guild_id is None:
            await _tell(interaction, TOP_IN_DMS)
            return
        back, words = PERIODS[period]
        since = self.bot.store.clock() - back if back is not None else None
        songs = await self.bot.store.top_songs(interaction.guild_id, since=since, limit=TOP_LIMIT)
        if not songs:
            await _tell(interaction, f"No votes yet for songs written {words} (还没有投票): "
                                     f"click 👍 under a song you like.")
            return
        embed = discord.Embed(title=f"🏆 Most-voted songs written {words} (排行榜)", colour=messages.EMBED_COLOUR,
                              description="\n".join(song_line(song, rank) for rank, song in enumerate(songs, 1)))
        embed.set_footer(text="/favourites show id:<n> shows one in full")
        await interaction.response.send_message(embed=embed, allowed_mentions=NO_MENTIONS)  # public: worth sharing

    @app_commands.command(name="show", description="看一首歌 · One song in full, with its votes and how to replay it")
    @app_commands.rename(song_id="id")
    @app_commands.describe(song_id="歌的编号 · The song's number (the # in its footer)")
    async def show(self, interaction: discord.Interaction, song_id: app_commands.Range[int, 1, SONG_ID_MAX]) -> None:
        song = await self._visible_song(interaction, song_id)
        if song is None:
            await _tell(interaction, not_found(song_id))
            return
        await interaction.response.send_message(embed=song_details(song), ephemeral=True,
                                                allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="remove", description="取消收藏 · Remove a song from your saved songs")
    @app_commands.rename(song_id="id")
    @app_commands.describe(song_id="歌的编号 · The song's number (see /favourites mine)")
    async def remove(self, interaction: discord.Interaction,
                     song_id: app_commands.Range[int, 1, SONG_ID_MAX]) -> None:
        # Any of the member's saved songs, wherever it was saved: the list is theirs.
        if await self.bot.store.remove_favourite(interaction.user.id, song_id):
            await _tell(interaction, f"Removed song #{song_id} from your saved songs (已取消收藏).")
        else:
            await _tell(interaction, f"Song #{song_id} is not among your saved songs: see /favourites mine.")

    @app_commands.command(name="forget-me", description="删除我的数据 · Delete everything the bot stores about you")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(FORGET_QUESTION, view=views.forget_view(interaction.user.id),
                                                ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        """Anything unexpected: log it with the traceback, tell the member something short."""
        log.error("/favourites %s failed", interaction.command.name if interaction.command else "?", exc_info=error)
        try:
            await _tell(interaction, messages.INTERNAL_ERROR)
        except discord.HTTPException:
            log.warning("could not tell the member about the error either")


async def _tell(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer (a followup if the interaction was answered already)."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: LyricsBot) -> None:
    # Registered here, not on a message: any message's buttons work, including those sent before a restart.
    bot.add_dynamic_items(*views.DYNAMIC_ITEMS)
    await bot.add_cog(Favourites(bot))


async def teardown(bot: LyricsBot) -> None:
    bot.remove_dynamic_items(*views.DYNAMIC_ITEMS)
