"""forget-me beyond the database: songs still being written, song messages left on Discord, stale vote labels.

    bot.forgetting.forget(user_id)       # before store.forget_user: their songs in progress are dropped
    with bot.forgetting.track(user_id, ticket, asked_at) as request:   # /lyrics, around one song
        ... if request.forgotten: do not store or post it
    drainer = DeletionDrainer(bot); drainer.start()   # deletes what forget_user queued, resumes after a restart
    with drainer.expecting(user_id) as outcome: ...  # the forget-me reply waits for its own member's outcome

The store records every song message still to delete in the forget's own transaction (`pending_deletions`),
so a crash, a restart or an expired interaction token loses none of them: one process drains the queue (the
only process, or the trainer when shards run in several processes) and, once a member's messages are all
settled, tells them, by editing their forget-me reply if it is still waiting here, else in a direct message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import discord

from bot import messages, views
from bot.i18n import Locale
from bot.store import DeletionProgress, PendingDeletion, StoreError, utcnow

if TYPE_CHECKING:
    from bot.client import LyricsBot
    from bot.engine import Ticket

log = logging.getLogger(__name__)

RECENT = timedelta(minutes=30)  # how long a forget is remembered: longer than any song takes to be written
UNKNOWN_MESSAGE = 10008  # Discord's error code for a message that no longer exists
POLL_S = 30.0  # how often the drainer looks for deletions queued by another process
BATCH = 50  # pending deletions read at a time
TRIES = 5  # a message Discord keeps failing to delete (5xx) counts as unreachable after this many tries
RETRY_S = 5.0  # the pause after a pass in which Discord failed
HISTORY_LIMIT = 100  # messages looked through around a song's time for a message whose id was never recorded
LABELS_REFRESHED = 100  # vote labels corrected after a forget, newest songs first (each is one edit, rate-limited)


# ---------------------------------------------------------------------------------------------
# songs being written when their member is forgotten


@dataclass(eq=False)
class Request:
    """One song a member asked for, from its place in the queue until it is posted."""

    user_id: int
    ticket: Ticket
    forgotten: bool = False  # the member used forget-me since asking: the song must not be kept or posted


@dataclass
class Forgetting:
    """Members forgotten lately, and the songs they asked for that are still in progress in this process."""

    _requests: dict[int, set[Request]] = field(default_factory=dict)
    _forgotten: dict[int, datetime] = field(default_factory=dict)

    @contextlib.contextmanager
    def track(self, user_id: int, ticket: Ticket, asked_at: datetime) -> Iterator[Request]:
        """Follow one song from its submission until it is posted (or dropped). A song asked for before the
        member's forget-me (a click that reached the queue late) is dropped at once."""
        request = Request(user_id, ticket)
        forgotten_at = self._forgotten.get(user_id)
        if forgotten_at is not None and asked_at <= forgotten_at:
            self._drop(request)
        self._requests.setdefault(user_id, set()).add(request)
        try:
            yield request
        finally:
            mine = self._requests.get(user_id)
            if mine is not None:
                mine.discard(request)
                if not mine:
                    del self._requests[user_id]

    def forget(self, user_id: int) -> int:
        """Remember that the member is being forgotten, and drop their songs in progress; returns how many."""
        now = utcnow()
        self._forgotten = {user: when for user, when in self._forgotten.items() if now - when < RECENT}
        self._forgotten[user_id] = now
        dropped = list(self._requests.get(user_id, ()))
        for request in dropped:
            self._drop(request)
        return len(dropped)

    @staticmethod
    def _drop(request: Request) -> None:
        request.forgotten = True
        request.ticket.cancel()  # out of the queue; a song already in a batch is dropped when it comes out


# ---------------------------------------------------------------------------------------------
# the song messages forget-me queued


class DeletionDrainer:
    """Deletes the song messages forget-me queued, in the background, and tells each member when theirs are done."""

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tries: dict[int, int] = {}  # pending deletion id -> failed tries (this process)
        self._waiting: dict[int, asyncio.Future[DeletionProgress | None]] = {}  # member -> their forget-me reply
        # member -> the language of their forget-me, for the direct message that ends it (after a restart: English)
        self._locales: dict[int, Locale] = {}

    def start(self) -> None:
        self._wake.set()  # a restart finds the queue as it was left
        self._task = asyncio.create_task(self._run(), name="forget-me deletions")

    async def stop(self) -> None:
        """Stop where it is (the rest stays queued for the next start); replies waiting here hear None."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    @contextlib.contextmanager
    def expecting(self, user_id: int, locale: Locale = None) -> Iterator[asyncio.Future[DeletionProgress | None]]:
        """While inside, the member's outcome (once all their messages are settled) goes to the returned future
        instead of a direct message: the forget-me reply says it. Enter before the forget commits, since the
        drainer may settle everything at once. The future gets None if the bot stops first. A direct message
        sent later is in `locale`'s language, the forget-me's."""
        self._locales[user_id] = locale
        waiter: asyncio.Future[DeletionProgress | None] = asyncio.get_running_loop().create_future()
        self._waiting[user_id] = waiter
        try:
            yield waiter
        finally:
            if self._waiting.get(user_id) is waiter:
                del self._waiting[user_id]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            try:
                failed = await self.drain()
            except (StoreError, discord.HTTPException, OSError) as exc:  # the next pass tries again
                log.warning("forget-me deletions: %s; trying again in %.0fs", exc, RETRY_S)
                failed = True
            except Exception:  # a bug must not end the task: what is queued would wait for a restart
                log.exception("forget-me deletions failed; trying again in %.0fs", RETRY_S)
                failed = True
            if failed:
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def drain(self) -> bool:
        """One pass over the queue, then tell the members whose messages are all settled. Returns whether some
        deletion failed for now (Discord erring), to be tried again after a pause."""
        store, failed, skip = self.bot.store, False, set()
        while rows := [row for row in await store.pending_deletions(limit=BATCH) if row.id not in skip]:
            for row in rows:
                outcome = await self._delete(row)
                if outcome is None:
                    tries = self._tries[row.id] = self._tries.get(row.id, 0) + 1
                    if tries < TRIES:
                        failed = True
                        skip.add(row.id)
                        continue
                    outcome = False
                self._tries.pop(row.id, None)
                await store.settle_deletion(row.id, deleted=outcome)
        for user_id in await store.settled_forgets():
            await self._tell(user_id, await store.deletion_progress(user_id))
            await store.clear_deletions(user_id)
        return failed

    async def _delete(self, row: PendingDeletion) -> bool | None:
        """Delete one song message: True if it is gone (deleted, already gone, or never sent), False if the bot
        cannot reach it, None if Discord failed for now."""
        channel = self.bot.get_partial_messageable(row.channel_id)
        try:
            message_id = row.message_id or await self._find(channel, row)
            if message_id is None:
                return True  # never sent (the song was dropped before its reply), or deleted by hand
            await channel.get_partial_message(message_id).delete()
        except discord.NotFound as exc:
            return exc.code == UNKNOWN_MESSAGE  # otherwise the channel itself is gone, or the bot left the server
        except discord.Forbidden as exc:
            log.info("cannot delete message %s in channel %d: %s", row.message_id, row.channel_id, exc)
            return False
        except discord.HTTPException as exc:
            log.info("deleting message %s in channel %d failed for now: %s", row.message_id, row.channel_id, exc)
            return None
        return True

    async def _find(self, channel: discord.PartialMessageable, row: PendingDeletion) -> int | None:
        """The bot's message carrying the song's buttons, among the channel's messages around when it was written
        (its id was never recorded: the bot stopped between posting it and recording it)."""
        wanted = f"song:vote:{row.song_id}"
        async for message in channel.history(limit=HISTORY_LIMIT, around=row.written_at):
            if self.bot.user is not None and message.author.id != self.bot.user.id:
                continue
            if any(getattr(child, "custom_id", None) == wanted for bar in message.components for child in _items(bar)):
                return message.id
        return None

    async def _tell(self, user_id: int, progress: DeletionProgress) -> None:
        waiter = self._waiting.get(user_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(progress)  # the forget-me reply is still waiting: it says so itself
            return
        text = messages.deletions_done_text(self._locales.pop(user_id, None), progress)
        try:
            channel = await self.bot.create_dm(discord.Object(user_id))
            await channel.send(text)
        except discord.HTTPException as exc:  # DMs closed, or the member left every shared server
            log.info("could not tell user %d that their song messages are deleted: %s", user_id, exc)


def _items(bar: object) -> list[object]:
    """The components in an action row (a lone component is its own row)."""
    return list(getattr(bar, "children", None) or [bar])


async def refresh_vote_labels(bot: LyricsBot, song_ids: tuple[int, ...]) -> None:
    """Show the current count on the 👍 of songs the forgotten member had voted for (best effort: a message the
    bot cannot edit, or one beyond the newest LABELS_REFRESHED, keeps the old count until its next click)."""
    for song_id in sorted(song_ids, reverse=True)[:LABELS_REFRESHED]:
        try:
            song = await bot.store.get_song(song_id)
            if song is None or song.message_id is None:
                continue
            message = bot.get_partial_messageable(song.channel_id).get_partial_message(song.message_id)
            # content=None, as the song was posted: an edit with content carries the client's allowed mentions.
            await message.edit(content=None, view=views.song_view(song_id, votes=song.votes))
        except (discord.HTTPException, StoreError) as exc:
            log.info("could not refresh the vote count on song %d: %s", song_id, exc)
