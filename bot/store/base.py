"""What every store is: the records it keeps, the errors it raises, and `Store`, the interface both backends implement.

The bot only ever talks to a `Store`; which database is behind it (one SQLite file, or PostgreSQL shared by
several shard processes) is chosen once, by `bot.store.open_store`. Both backends keep the same guarantees,
and tests/bot/store/test_contract.py runs one suite against both:

  * migrations are versioned and each runs in one transaction with its version bump; a database of a
    newer schema, or one that is not the bot's, is refused untouched;
  * a vote is toggled once per click and counted exactly, even when two processes (shards) toggle the same
    member's vote on the same song at the same moment;
  * song ids are never reused (an old message's buttons carry the id of a song that may be gone);
  * forget-me deletes everything of the member in one transaction, and records in that same transaction
    which song messages are still to be deleted on Discord (the queue `pending_deletions` drains);
  * a member's vote, save or new song never commits in the middle of their forget-me: it lands wholly
    before (and is deleted with the rest) or wholly after it;
  * a method either happens completely or not at all (a failed COMMIT included); a database that fails
    raises DatabaseError, whichever the driver (its own error is the cause).

Ids are plain ints (Discord snowflakes fit a signed 64-bit integer), times are aware UTC datetimes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self

from bot.store.coordination import Coordinator

DM_GUILD_ID = 0  # the guild_id of songs written in direct messages; no guild has id 0
# How long forget-me remembers a member's id, to refuse songs they asked for before it that finish after it (in
# any process): longer than any song waits and is written (LYRICS_REQUEST_TIMEOUT).
FORGOTTEN_FOR = timedelta(hours=1)

# -----------------------------------------------------------------------------
# errors


class StoreError(Exception):
    """Base class of everything the stores raise on purpose."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer version of the bot; we refuse to touch it."""


class CorruptDatabaseError(StoreError):
    """The database is damaged, or is not the bot's; left untouched."""


class DatabaseError(StoreError):
    """The database could not be reached or used, or failed the request; nothing was changed.

    What the driver raised (sqlite3.Error, asyncpg's errors) is its `__cause__`: no caller needs the driver.
    """


class SongNotFoundError(StoreError):
    """No song has this id (it never existed, or it was deleted)."""


class SelfVoteError(StoreError):
    """Members cannot vote for a song they asked for."""


class MemberForgottenError(StoreError):
    """The song's member used forget-me after asking for it (NewSong.asked_at): it is not stored under their id."""


class TrainerTakenError(StoreError):
    """Another process on this database already trains (LYRICS_TRAINER=1): exactly one may."""


# -----------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class NewSong:
    """What the bot knows about a song when it has just written it."""

    guild_id: int
    channel_id: int
    author_id: int  # the member who asked for it
    seed: str  # the prompt the member typed
    temperature: float
    length: int
    random_seed: int  # with bundle_hash and the settings above, replays the exact song
    bundle_hash: str  # which trained model bundle wrote it
    text: str
    rhyme: str = "auto"  # the rhyme asked for: "auto", "off" or one character (SampleRequest.rhyme)
    # When the member asked for it: if they used forget-me since (remembered FORGOTTEN_FOR), add_song refuses it.
    asked_at: datetime | None = None


@dataclass(frozen=True)
class Song:
    """A stored song, with its current number of votes."""

    id: int
    guild_id: int
    channel_id: int
    author_id: int | None  # None once the author used forget-me
    seed: str
    temperature: float
    length: int
    random_seed: int
    bundle_hash: str | None  # None for songs stored before schema v2
    text: str
    message_id: int | None  # None until the bot's reply has been sent
    created_at: datetime  # aware, UTC
    votes: int
    rhyme: str = "auto"  # "auto" for songs stored before schema v4, when every song rhymed automatically


@dataclass(frozen=True)
class VoteResult:
    voted: bool  # True: the click added a vote; False: it withdrew one
    count: int  # the song's votes right after this click, counted in the same transaction


@dataclass(frozen=True)
class ForgetReport:
    """What forget-me deletes (forget_preview) or deleted (forget_user)."""

    votes: int  # the member's votes
    favourites: int  # the member's saved songs (the saves, not the songs)
    songs: int  # the songs the member asked for, deleted with everything attached to them:
    votes_on_songs: int  # other members' votes for those songs
    saves_of_songs: int  # other members' saves of those songs
    messages: int = 0  # forget_user: the deleted songs' messages now queued for deletion (pending_deletions)
    voted_songs: tuple[int, ...] = ()  # forget_user: other members' songs the member had voted for (labels to fix)


@dataclass(frozen=True)
class PendingDeletion:
    """A song message forget-me still has to delete on Discord, recorded in the forget's own transaction."""

    id: int
    user_id: int  # the forgotten member, told once all of theirs are settled
    channel_id: int
    message_id: int | None  # None: never recorded; found by its song id among the channel's messages
    song_id: int
    written_at: datetime  # when the song was written: where to look for a message never recorded


@dataclass(frozen=True)
class DeletionProgress:
    """Where the deletion of one forgotten member's song messages stands."""

    pending: int
    deleted: int  # deleted, already gone, or never sent
    unreachable: int  # the bot can no longer reach the channel: a moderator has to delete them

    @property
    def settled(self) -> int:
        return self.deleted + self.unreachable


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_aware(moment: datetime) -> datetime:
    """`moment` in UTC; a naive time is refused, as it would silently shift a period filter by the local offset."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware one (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC)


# -----------------------------------------------------------------------------
# what both backends' SQL and checks share (each writes the rest in its own database's words)

# A `Song` row, from `songs s`; with SONG_VOTES (or a COUNT over a join) AS votes.
SONG_COLUMNS = (
    "s.id, s.guild_id, s.channel_id, s.author_id, s.seed, s.temperature, s.length,"
    " s.random_seed, s.bundle_hash, s.text, s.message_id, s.created_at, s.rhyme"
)
SONG_VOTES = "(SELECT COUNT(*) FROM votes v WHERE v.song_id = s.id)"


def forget_counts_sql(member: str) -> str:
    """The query of a `ForgetReport`'s five counts, in its order; `member` is the member's parameter (":u", "$1")."""
    u = member
    return (
        f"SELECT (SELECT COUNT(*) FROM votes WHERE user_id = {u}),"
        f" (SELECT COUNT(*) FROM favourites WHERE user_id = {u}),"
        f" (SELECT COUNT(*) FROM songs WHERE author_id = {u}),"
        f" (SELECT COUNT(*) FROM votes v JOIN songs s ON s.id = v.song_id"
        f"  WHERE s.author_id = {u} AND v.user_id != {u}),"
        " (SELECT COUNT(*) FROM favourites f JOIN songs s ON s.id = f.song_id"
        f"  WHERE s.author_id = {u} AND f.user_id != {u})"
    )


def check_schema_version(version: int, latest: int, where: object) -> None:
    """Refuse a database of a schema newer than this bot's (`latest`): SchemaTooNewError, naming `where`."""
    if version > latest:
        raise SchemaTooNewError(
            f"{where} has schema version {version} but this bot only knows up to version"
            f" {latest}; upgrade the bot (the database was left untouched)"
        )


# -----------------------------------------------------------------------------
# the interface


class Store(abc.ABC):
    """All the bot's persistent state. Open one with `bot.store.open_store`; close it with `close()` (or `async with`).

    `clock` gives the time songs, votes and saves are stamped with (tests move it by hand).
    """

    clock: Callable[[], datetime]

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the data lives, for logs: a path, or a URL without its password."""

    @property
    @abc.abstractmethod
    def coordinator(self) -> Coordinator:
        """The processes' coordination on this database (the trainer's claim, the relay): not the bot's memory,
        but on the same database, and closed with the store (bot/store/coordination.py)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Wait for the running operations, then close (twice is fine)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- songs

    @abc.abstractmethod
    async def add_song(self, song: NewSong) -> int:
        """Store a freshly written song; returns its id (never one a deleted song had; message_id is set later).

        Raises MemberForgottenError if its member used forget-me after `song.asked_at`."""

    @abc.abstractmethod
    async def set_message_id(self, song_id: int, message_id: int) -> None:
        """Remember which Discord message shows the song. Raises SongNotFoundError."""

    @abc.abstractmethod
    async def get_song(self, song_id: int, *, guild_id: int | None = None) -> Song | None:
        """The song with its vote count, or None if there is none.

        With `guild_id`, a song from another guild is also None: callers can't tell it apart
        from a missing one, so nothing leaks across servers.
        """

    async def visible_song(self, song_id: int, *, guild_id: int | None, channel_id: int | None) -> Song | None:
        """The song if it can be seen from where the asker is, else None (exactly like a missing song).

        Songs are visible where they were written: in their guild, or (`guild_id` None: a DM) in their
        DM channel, so nothing leaks across servers or between members' DMs.
        """
        if guild_id is not None:
            return await self.get_song(song_id, guild_id=guild_id)
        song = await self.get_song(song_id, guild_id=DM_GUILD_ID)
        return song if song is not None and song.channel_id == channel_id else None

    @abc.abstractmethod
    async def delete_song(self, song_id: int) -> bool:
        """Delete the song and its votes and favourites. False if it wasn't there."""

    # ---- votes

    @abc.abstractmethod
    async def toggle_vote(self, song_id: int, user_id: int) -> VoteResult:
        """A first click votes, the next click withdraws; returns the new state and the exact count.

        Raises SongNotFoundError, or SelfVoteError for the song's author (a forgotten author
        is no longer known, so they can vote like anyone else).
        """

    @abc.abstractmethod
    async def top_songs(
        self,
        guild_id: int,
        *,
        since: datetime | None = None,
        limit: int = 10,
        channel_ids: Collection[int] | None = None,
    ) -> list[Song]:
        """The guild's most-voted songs, ties broken newest first.

        `since` keeps songs *written* at or after that moment (a week's leaderboard shows
        that week's songs, counting all their votes); None means all time. Songs without a
        vote are left out: a leaderboard of zeros is noise. `channel_ids` keeps only songs
        written in those channels (the ones the asker can read); None means every channel.
        """

    # ---- favourites

    @abc.abstractmethod
    async def add_favourite(self, user_id: int, song_id: int) -> bool:
        """Save a song for the user; False if it was already saved. Raises SongNotFoundError."""

    @abc.abstractmethod
    async def remove_favourite(self, user_id: int, song_id: int) -> bool:
        """Unsave a song; False if it wasn't saved."""

    @abc.abstractmethod
    async def list_favourites(self, user_id: int, *, limit: int = 10, offset: int = 0) -> list[Song]:
        """One page of the user's saved songs, most recently saved first."""

    @abc.abstractmethod
    async def count_favourites(self, user_id: int) -> int:
        """How many songs the user has saved (for "page 2 of 5")."""

    # ---- privacy

    @abc.abstractmethod
    async def forget_preview(self, user_id: int) -> ForgetReport:
        """What forget_user would delete now (the confirmation lists it); nothing is changed."""

    @abc.abstractmethod
    async def forget_user(self, user_id: int) -> ForgetReport:
        """Delete the user's votes, favourites and the songs they asked for (with other members' votes and
        saves of those songs), and queue those songs' messages for deletion (`pending_deletions`), in one
        transaction; returns what went."""

    @abc.abstractmethod
    async def pending_deletions(self, *, limit: int = 100) -> list[PendingDeletion]:
        """Song messages forget-me still has to delete, oldest first."""

    @abc.abstractmethod
    async def settle_deletion(self, deletion_id: int, *, deleted: bool) -> None:
        """Mark a pending deletion done: deleted (or already gone), or not `deleted` (unreachable)."""

    @abc.abstractmethod
    async def deletion_progress(self, user_id: int) -> DeletionProgress:
        """How far the deletion of the member's song messages is (all zero: nothing queued)."""

    @abc.abstractmethod
    async def settled_forgets(self) -> list[int]:
        """Members whose queued deletions are all settled, so they can be told (then `clear_deletions`)."""

    @abc.abstractmethod
    async def clear_deletions(self, user_id: int) -> None:
        """Drop the member's settled deletions (they were told): the last trace of their id."""
