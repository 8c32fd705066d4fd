"""Votes, saved songs and leaderboards: the buttons under every song and the /favourites commands.

    👍 vote (label: the count)   ⭐ save / unsave   🗑 delete (the member who asked for the song, or an admin)
    (🎲 again is the lyrics cog's: bot/exts/lyrics.py)

    /favourites mine | top [period] | show id | remove id | forget-me

The buttons are the persistent `DynamicItem`s of bot/views.py; this cog is their `ButtonHandler`.
A click on a button under a song is answered within Discord's 3 seconds either by updating the message
in place (callback type 7: the new vote count, or "deleted") or with an ephemeral note.

Songs are visible where they were written: in their guild to members who can read the channel they were
written in, or in their DM channel. A song id from elsewhere is answered exactly like an id that does not
exist, so nothing leaks across servers or out of private channels (song ids are sequential: easy to guess).
The public leaderboard shows only songs from public channels and from the channel it is posted in; what
else the asker may read comes in a leaderboard only they see.

forget-me forgets in one transaction that also queues the member's song messages for deletion; the
`DeletionDrainer` (bot/forgetting.py) deletes them in the background, also after a restart, and the reply
waits for it to say how it went (or says a direct message will).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from bot.corpora import Corpora
from bot.forgetting import DeletionDrainer, refresh_vote_labels
from bot.i18n import Locale, localized, text
from bot.permissions import ShuttingDown, can_read, everyone_can_read, is_admin, readable_channels
from bot.replies import defer_if_slow, tell, update
from bot.store import DeletionProgress, SelfVoteError, Song, SongNotFoundError, VoteResult
from bot.views import ForgetChoice, SongAction

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

PAGE_SIZE = 5  # songs per page of /favourites mine
TOP_LIMIT = 10  # songs on a leaderboard
SONG_ID_MAX = 2**53  # the largest integer option Discord accepts; ids never get near it
# How long the forget-me reply waits for its song messages to be deleted: its token lasts 15 minutes.
FORGET_REPLY_WAIT_S = 600.0
Period = Literal["week", "month", "all"]
# How far back a leaderboard looks (None: no limit); its title says so with the text favourites.period_<period>.
PERIODS: dict[str, timedelta | None] = {"week": timedelta(days=7), "month": timedelta(days=30), "all": None}

# ---------------------------------------------------------------------------------------------
# keeping the vote label right when clicks overlap

# How often a settle re-reads its song after editing the message (see LabelSync). Each pass beyond the first
# means another click's edit landed in between; past this, the next click fixes the label.
SETTLE_PASSES = 5
UNKNOWN = -1  # what a message shows after overlapping edits landed in an unknown order (counts are >= 0)


@dataclass
class Burst:
    """Updates of one song's message, in this process, whose handling overlaps in time."""

    running: int = 0
    overlapped: bool = False
    last: discord.Interaction | None = None  # a click answered by editing the message: its token edits it again
    shown: int | None = None  # the vote count its edit showed (None: it showed the song deleted)


class LabelSync:
    """Makes the vote label end up equal to the stored count, without making clicks wait for each other.

    Each click answers with the count its own toggle saw, and Discord shows whichever edit lands last: when
    clicks overlap, in this process or in another shard's, that may be an older count. So the last click of
    each burst (the updates of a song that overlap in this process) settles the label once every edit of
    the burst has landed: it re-reads the song and edits the message while it is behind, checking again
    after each edit. Whichever edit lands last was then checked by its process against a read made after
    it landed; a toggle after that read edits later still, and settles in turn. A burst of overlapping
    clicks costs one read and one edit more; a lone click one read.
    """

    def __init__(self, read: Callable[[int], Awaitable[Song | None]]) -> None:
        self._read = read
        self._bursts: dict[int, Burst] = {}

    @asynccontextmanager
    async def update(self, song_id: int) -> AsyncIterator[Burst]:
        """Wrap one update of the song's message; set `burst.last` and `burst.shown` once the message was edited."""
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
                if burst.last is not None:
                    # After overlapping edits, which of them shows is unknown: edit in any case.
                    await self._settle(song_id, burst.last, UNKNOWN if burst.overlapped else burst.shown)

    async def _settle(self, song_id: int, interaction: discord.Interaction, shown: int | None) -> None:
        try:
            for _ in range(SETTLE_PASSES):
                song = await self._read(song_id)
                if song is None:  # deleted meanwhile: a vote's edit must not have put the buttons back
                    if shown is not None:
                        content = messages.removed_text(interaction.locale, song_id)
                        await interaction.edit_original_response(content=content, embed=None, view=None)
                    return
                if song.votes == shown:
                    return
                await interaction.edit_original_response(view=views.song_view(song_id, votes=song.votes))
                shown = song.votes
        except discord.HTTPException as exc:  # the label stays a little off; the next click fixes it
            log.warning("could not refresh the message of song %d: %s", song_id, exc)
            return
        log.info("the vote label of song %d was still moving after %d passes", song_id, SETTLE_PASSES)


# ---------------------------------------------------------------------------------------------
# the cog


class Favourites(
    commands.GroupCog,
    group_name=localized("commands.favourites.name"),
    group_description=localized("commands.favourites.description"),
):
    """The /favourites commands, and the handler of every button in bot/views.py."""

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        self.labels = LabelSync(lambda song_id: self.bot.store.get_song(song_id))
        self.drainer: DeletionDrainer | None = None

    async def cog_load(self) -> None:
        # One process drains forget-me's queue: the only one, or the trainer when shards run in several.
        sharding = self.bot.settings.sharding
        if self.bot.serve and (not sharding.partial or sharding.trainer):
            self.drainer = DeletionDrainer(self.bot)
            self.drainer.start()
            self.bot.add_cleanup(self.drainer.stop)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Every /favourites command: none starts once the bot is shutting down (the store is closing)."""
        if self.bot.shutting_down:
            raise ShuttingDown("the bot is shutting down")
        return True

    # ---- helpers

    async def _visible_song(self, interaction: discord.Interaction, song_id: int) -> Song | None:
        """The song if the member may see it from where they are: written in this guild in a channel they can
        read, or (in DMs) in this DM channel. Otherwise None, exactly as for a song that does not exist."""
        song = await self.bot.store.visible_song(
            song_id, guild_id=interaction.guild_id, channel_id=interaction.channel_id
        )
        if song is not None and interaction.guild_id is not None and not can_read(interaction, song.channel_id):
            return None
        return song

    # ---- the buttons under a song

    async def on_song_button(self, interaction: discord.Interaction, action: SongAction, song_id: int) -> None:
        if self.bot.shutting_down:
            raise ShuttingDown("the bot is shutting down")
        handle = {SongAction.VOTE: self._vote, SongAction.SAVE: self._save, SongAction.DELETE: self._delete}[action]
        async with self.bot.busy():  # a shutdown lets the click finish before the store closes
            await handle(interaction, song_id)

    # Each click's database work runs under defer_if_slow: answered at once (one callback that both
    # acknowledges and updates) when the database is quick, deferred first when it is slow, so that a
    # busy database never costs a click Discord's 3 seconds.

    async def _vote(self, interaction: discord.Interaction, song_id: int) -> None:
        async with self.labels.update(song_id) as burst:
            answer = await defer_if_slow(interaction, self._toggle_vote(interaction, song_id))
            if isinstance(answer, str):
                await tell(interaction, answer)
                return
            await update(interaction, view=views.song_view(song_id, votes=answer.count))
            burst.last, burst.shown = interaction, answer.count

    async def _toggle_vote(self, interaction: discord.Interaction, song_id: int) -> VoteResult | str:
        """The click's vote in the store, or the refusal to tell the clicker."""
        locale = interaction.locale
        if await self._visible_song(interaction, song_id) is None:
            return _not_found(locale, song_id)
        try:
            return await self.bot.store.toggle_vote(song_id, interaction.user.id)
        except SelfVoteError:
            return text(locale, "favourites.self_vote")
        except SongNotFoundError:  # deleted since the check above
            return _not_found(locale, song_id)

    async def _save(self, interaction: discord.Interaction, song_id: int) -> None:
        """A first click saves the song for the clicker, the next one unsaves it."""
        await tell(interaction, await defer_if_slow(interaction, self._toggle_save(interaction, song_id)))

    async def _toggle_save(self, interaction: discord.Interaction, song_id: int) -> str:
        locale = interaction.locale
        if await self._visible_song(interaction, song_id) is None:
            return _not_found(locale, song_id)
        user_id = interaction.user.id
        try:
            saved = await self.bot.store.add_favourite(user_id, song_id)
        except SongNotFoundError:
            return _not_found(locale, song_id)
        if saved:
            return text(locale, "favourites.saved", id=song_id)
        await self.bot.store.remove_favourite(user_id, song_id)
        return text(locale, "favourites.unsaved", id=song_id)

    async def _delete(self, interaction: discord.Interaction, song_id: int) -> None:
        async with self.labels.update(song_id) as burst:  # a vote click in flight must not put the buttons back
            refusal, by = await defer_if_slow(interaction, self._delete_song(interaction, song_id))
            if refusal is not None:
                await tell(interaction, refusal)
                return
            content = messages.removed_text(interaction.locale, song_id, by)
            await update(interaction, content=content, embed=None, view=None)
            burst.last, burst.shown = interaction, None

    async def _delete_song(self, interaction: discord.Interaction, song_id: int) -> tuple[str | None, str]:
        """Delete the song if the clicker may: (None, who deleted it: "author" or "admin"), or (the refusal, "")."""
        locale = interaction.locale
        song = await self._visible_song(interaction, song_id)
        if song is None:
            return _not_found(locale, song_id), ""
        is_author = song.author_id is not None and song.author_id == interaction.user.id
        if not is_author and not is_admin(interaction, self.bot.settings):
            return text(locale, "favourites.delete_refused"), ""
        if not await self.bot.store.delete_song(song_id):
            return _not_found(locale, song_id), ""  # someone else deleted it a moment ago
        by = "author" if is_author else "admin"
        log.info("song %d deleted by user %d (%s)", song_id, interaction.user.id, by)
        return None, by

    # ---- the pager and the forget-me question

    async def on_favourites_page(self, interaction: discord.Interaction, owner_id: int, page: int) -> None:
        if interaction.user.id != owner_id:
            await tell(interaction, text(interaction.locale, "favourites.not_your_list"))
            return
        if self.bot.shutting_down:
            raise ShuttingDown("the bot is shutting down")
        async with self.bot.busy():
            shown = await defer_if_slow(interaction, self._favourites_page(interaction.locale, owner_id, page))
        if shown is None:  # unsaved everything since the list was shown
            await update(interaction, content=text(interaction.locale, "favourites.none"), embed=None, view=None)
            return
        embed, pager = shown
        await update(interaction, embed=embed, view=pager)

    async def _favourites_page(
        self, locale: Locale, user_id: int, page: int
    ) -> tuple[discord.Embed, discord.ui.View | None] | None:
        """Page `page` (0-based, clamped to the last one) of the user's saved songs, newest first."""
        total = await self.bot.store.count_favourites(user_id)
        if total == 0:
            return None
        pages = math.ceil(total / PAGE_SIZE)
        page = min(max(page, 0), pages - 1)
        songs = await self.bot.store.list_favourites(user_id, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
        embed = discord.Embed(
            title=text(locale, "favourites.title"),
            colour=messages.EMBED_COLOUR,
            description="\n".join(messages.song_line(song) for song in songs),
        )
        embed.set_footer(text=text(locale, "favourites.page_footer", page=page + 1, pages=pages, total=total))
        # Songs saved from another server are listed too (they are the member's), but /favourites
        # show only opens songs of the server it is used in.
        return embed, views.pager_view(user_id, page, pages)

    async def on_forget_choice(self, interaction: discord.Interaction, owner_id: int, choice: ForgetChoice) -> None:
        locale = interaction.locale
        if interaction.user.id != owner_id:
            await tell(interaction, text(locale, "favourites.not_your_question"))
            return
        if choice is ForgetChoice.CANCEL:
            await interaction.response.edit_message(content=text(locale, "forget.cancelled"), view=None)
            return
        if self.bot.shutting_down:  # the store is closing: nothing is deleted, the question can be asked again
            raise ShuttingDown("the bot is shutting down")
        # Deleting touches the database and then every song's message: acknowledge the click first.
        await interaction.response.defer()
        async with self.bot.busy():
            waiting = self.drainer.expecting(owner_id, locale) if self.drainer else contextlib.nullcontext(None)
            with waiting as outcome:  # before the forget commits: the drainer may finish at once
                dropped = self.bot.forgetting.forget(owner_id)  # first: a song finishing now is not kept
                report = await self.bot.store.forget_user(owner_id)
                records = await self._forget_corpus_records(owner_id)
                log.info(
                    "forgot user %d: %d votes, %d favourites, %d songs (%d messages queued), %d songs in progress,"
                    " %d corpus records",
                    owner_id,
                    report.votes,
                    report.favourites,
                    report.songs,
                    report.messages,
                    dropped,
                    records,
                )
                await refresh_vote_labels(self.bot, report.voted_songs)
                progress: DeletionProgress | None = None
                if report.messages and outcome is not None and self.drainer is not None:
                    self.drainer.wake()
                    with contextlib.suppress(TimeoutError):
                        progress = await asyncio.wait_for(asyncio.shield(outcome), FORGET_REPLY_WAIT_S)
            done = progress is not None
            if report.messages and not done:  # say what remains; the drainer's direct message ends it
                progress = await self.bot.store.deletion_progress(owner_id)
            reply = messages.forgotten_text(locale, report, progress, done=done, corpus_records=records)
            await interaction.edit_original_response(content=reply, view=None)

    async def _forget_corpus_records(self, user_id: int) -> int:
        """Take the member off the records of corpus files they added (best effort: a file error is logged)."""
        corpora = Corpora(self.bot.settings.corpora_path, self.bot.settings.corpus_path)
        try:
            return await asyncio.to_thread(corpora.forget_uploader, user_id)
        except OSError as exc:
            log.error("could not take user %d off the corpus records: %s", user_id, exc)
            return 0

    # ---- /favourites ...

    @app_commands.command(
        name=localized("commands.favourites.mine"), description=localized("commands.favourites.mine_description")
    )
    async def mine(self, interaction: discord.Interaction) -> None:
        async with self.bot.busy():
            await self._mine(interaction)

    async def _mine(self, interaction: discord.Interaction) -> None:
        shown = await self._favourites_page(interaction.locale, interaction.user.id, 0)
        if shown is None:
            await tell(interaction, text(interaction.locale, "favourites.none"))
            return
        embed, pager = shown
        extra = {"view": pager} if pager is not None else {}
        await interaction.response.send_message(embed=embed, ephemeral=True, **extra)

    @app_commands.command(
        name=localized("commands.favourites.top"), description=localized("commands.favourites.top_description")
    )
    @app_commands.rename(period=localized("commands.favourites.period"))
    @app_commands.describe(period=localized("commands.favourites.period_description"))
    @app_commands.choices(
        period=[app_commands.Choice(name=localized(f"commands.favourites.choice_{p}"), value=p) for p in PERIODS]
    )
    async def top(self, interaction: discord.Interaction, period: Period = "all") -> None:
        if interaction.guild_id is None:
            await tell(interaction, text(interaction.locale, "favourites.top_in_dms"))
            return
        async with self.bot.busy():
            await self._top(interaction, period)

    async def _top(self, interaction: discord.Interaction, period: Period) -> None:
        """The leaderboard everyone here may read, in public; and, only for the asker, the one of every channel
        they can read, if it differs."""
        guild_id, guild = interaction.guild_id or 0, interaction.guild  # guild: None if not cached (unavailable)
        locale = interaction.locale
        back, words = PERIODS[period], text(locale, f"favourites.period_{period}")
        since = self.bot.store.clock() - back if back is not None else None
        readable = readable_channels(interaction)
        here = {interaction.channel_id} if interaction.channel_id is not None else set()
        public = {c for c in readable if guild is not None and everyone_can_read(guild, c)} | here
        shown = await self.bot.store.top_songs(guild_id, since=since, limit=TOP_LIMIT, channel_ids=public)
        wider = shown
        if readable - public:
            wider = await self.bot.store.top_songs(guild_id, since=since, limit=TOP_LIMIT, channel_ids=readable | here)
        if not shown and not wider:
            await tell(interaction, text(locale, "favourites.no_votes", period=words))
            return
        if shown:
            footer = text(locale, "favourites.top_footer")
            await interaction.response.send_message(embed=_board(locale, shown, words, footer))  # worth sharing
        if [song.id for song in wider] != [song.id for song in shown]:
            embed = _board(locale, wider, words, text(locale, "favourites.top_wider_footer"))
            if interaction.response.is_done():
                await interaction.followup.send(embed=embed, ephemeral=True)
            else:
                await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(
        name=localized("commands.favourites.show"), description=localized("commands.favourites.show_description")
    )
    @app_commands.rename(song_id=localized("commands.favourites.id"))
    @app_commands.describe(song_id=localized("commands.favourites.show_id_description"))
    async def show(self, interaction: discord.Interaction, song_id: app_commands.Range[int, 1, SONG_ID_MAX]) -> None:
        async with self.bot.busy():
            await self._show(interaction, song_id)

    async def _show(self, interaction: discord.Interaction, song_id: int) -> None:
        song = await self._visible_song(interaction, song_id)
        if song is None:
            await tell(interaction, _not_found(interaction.locale, song_id))
            return
        embed = messages.song_embed(messages.SongCard.of(song), interaction.locale, record=song)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(
        name=localized("commands.favourites.remove"), description=localized("commands.favourites.remove_description")
    )
    @app_commands.rename(song_id=localized("commands.favourites.id"))
    @app_commands.describe(song_id=localized("commands.favourites.remove_id_description"))
    async def remove(self, interaction: discord.Interaction, song_id: app_commands.Range[int, 1, SONG_ID_MAX]) -> None:
        # Any of the member's saved songs, wherever it was saved: the list is theirs.
        async with self.bot.busy():
            removed = await self.bot.store.remove_favourite(interaction.user.id, song_id)
            key = "favourites.unsaved" if removed else "favourites.not_saved"
            await tell(interaction, text(interaction.locale, key, id=song_id))

    @app_commands.command(
        name=localized("commands.favourites.forget_me"),
        description=localized("commands.favourites.forget_me_description"),
    )
    async def forget_me(self, interaction: discord.Interaction) -> None:
        async with self.bot.busy():
            await self._forget_me(interaction)

    async def _forget_me(self, interaction: discord.Interaction) -> None:
        report = await defer_if_slow(interaction, self.bot.store.forget_preview(interaction.user.id), ephemeral=True)
        question = messages.forget_question(interaction.locale, report)
        buttons = views.forget_view(interaction.user.id, interaction.locale)
        if not interaction.response.is_done():
            await interaction.response.send_message(question, view=buttons, ephemeral=True)
        else:  # deferred (ephemeral: see below) while the database was slow
            await interaction.edit_original_response(content=question, view=buttons)


def _not_found(locale: Locale, song_id: int) -> str:
    return text(locale, "favourites.not_found", id=song_id)


def _board(locale: Locale, songs: list[Song], period_words: str, footer: str) -> discord.Embed:
    """A leaderboard: the songs, most votes first."""
    embed = discord.Embed(
        title=text(locale, "favourites.top_title", period=period_words),
        colour=messages.EMBED_COLOUR,
        description="\n".join(messages.song_line(song, rank) for rank, song in enumerate(songs, 1)),
    )
    embed.set_footer(text=footer)
    return embed


async def setup(bot: LyricsBot) -> None:
    # The buttons themselves are registered by LyricsBot.setup_hook: 🎲 is the lyrics cog's, and must not stop
    # working when this extension is unloaded.
    await bot.add_cog(Favourites(bot))
