"""What the store tests share: ids, a hand-moved clock, songs to store, and opening either backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import NewSong

GUILD, OTHER_GUILD = 1_100_000_000_000_000_001, 1_100_000_000_000_000_002
ALICE, BOB, CAROL = 2_200_000_000_000_000_001, 2_200_000_000_000_000_002, 2_200_000_000_000_000_003
CHANNEL, OTHER_CHANNEL = 3_300_000_000_000_000_001, 3_300_000_000_000_000_002
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand; each call also ticks 1 ms so order is unambiguous."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def new_song(
    author: int | None = ALICE, guild: int = GUILD, text: str = "窗外的麻雀 在电线杆上多嘴", channel: int = CHANNEL
) -> NewSong:
    return NewSong(
        guild_id=guild,
        channel_id=channel,
        author_id=author,
        seed="窗外",
        temperature=0.8,
        length=120,
        random_seed=1234,
        bundle_hash="ab12cd34",
        text=text,
    )
