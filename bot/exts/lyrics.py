"""/lyrics and the 🎲 button under a song: write a song from a seed, in Jay Chou's style.

The flow of one command, each step cheaper than the next:
  1. check the options on our side (Discord shows the bounds, but discord.py does not re-check them);
  2. refuse politely when no model is loaded or the bot is shutting down;
  3. the gate: a per-member cooldown and a bound on one member's songs in progress;
  4. a place in the engine's FIFO queue (refused only when the queue is full, or when the member's server
     already has its share of it waiting: LYRICS_GUILD_QUEUE, half of LYRICS_MAX_QUEUE by default);
  5. defer at once (Discord wants an answer within 3 s); while the song waits for a batch, the reply shows
     its place ("#12 in the queue"), edited as the queue moves (by a tenth of the place or more:
     a long queue is not hundreds of edits a second); then it becomes the song.
Every refusal is an ephemeral message that says what to change or when to come back, in the member's
language. The engine's refusals and failures (a full queue, no model, shutting down, a failed song) are
raised, and `LyricsTree.on_error` (bot/client.py) turns each into its reply. 🎲 replays a song (same seed,
temperature and length, a new random seed) through the same steps 2 to 5.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages, views
from bot.characters import characters_problem
from bot.engine import EngineClosedError, ModelNotLoadedError, Ticket
from bot.forgetting import Request
from bot.i18n import Locale, localized, text
from bot.replies import defer_if_slow, tell
from bot.settings import Limits
from bot.store import DM_GUILD_ID, MemberForgottenError, NewSong, StoreError
from model.rhyme import char_rhyme
from model.sample import SampleRequest

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

SEED_MAX = 200
TEMPERATURE_MIN, TEMPERATURE_MAX, TEMPERATURE_DEFAULT = 0.1, 2.0, 0.8
LENGTH_MIN, LENGTH_MAX, LENGTH_DEFAULT = 1, 500, 150
RANDOM_SEEDS = 2**32  # a random seed fits in 10 digits: short enough to read out of the footer
# What the rhyme option accepts besides one character whose rhyme to use.
RHYME_WORDS = {"": "auto", "auto": "auto", "自动": "auto", "off": "off", "none": "off", "不押韵": "off", "无": "off"}
PLACE_EDIT_INTERVAL_S = 1.0  # the least time between two edits of a member's place in the queue


# ---------------------------------------------------------------------------------------------
# step 1: the options


def parse_rhyme(value: str | None) -> str | None:
    """The sampler's rhyme request for the option's text: "auto", "off" or one Chinese character; None if invalid."""
    text = (value or "").strip().lower()
    if text in RHYME_WORDS:
        return RHYME_WORDS[text]
    return text if len(text) == 1 and char_rhyme(text) is not None else None


def check_options(
    seed: str, temperature: float, length: float, rhyme: str | None = None, *, locale: Locale = None
) -> list[str]:
    """What is wrong with the options, one sentence per problem (in `locale`'s language), each saying what to
    change."""
    problems = []
    if rhyme is not None and parse_rhyme(rhyme) is None:
        problems.append(text(locale, "lyrics.rhyme_unknown", rhyme=rhyme[:20]))
    if not seed.strip():
        problems.append(text(locale, "lyrics.seed_empty"))
    elif len(seed) > SEED_MAX:
        problems.append(text(locale, "lyrics.seed_too_long", length=len(seed), limit=SEED_MAX))
    if (problem := characters_problem(seed, "seed", locale)) is not None:  # the rule /corpus add applies too
        problems.append(problem)
    temperatures = {"low": TEMPERATURE_MIN, "high": TEMPERATURE_MAX, "value": temperature}
    if not math.isfinite(temperature):
        problems.append(text(locale, "lyrics.temperature_not_number", **temperatures))
    elif not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX:
        problems.append(text(locale, "lyrics.temperature_range", **temperatures))
    if not (math.isfinite(length) and length == int(length) and LENGTH_MIN <= length <= LENGTH_MAX):
        problems.append(text(locale, "lyrics.length_range", low=LENGTH_MIN, high=LENGTH_MAX, value=length))
    return problems


# ---------------------------------------------------------------------------------------------
# step 3: the gate


@dataclass(frozen=True)
class Refusal:
    """Why the gate said no (a key of the catalogues), and when the member may try again (None: depends on
    the queue)."""

    reason: str
    retry_after: float | None = None


@dataclass
class Gate:
    """A per-member cooldown and a bound on one member's songs in progress. (The engine's queue bounds the rest.)

    `admit` and `release` run on the event loop without awaiting, so no lock is needed.
    """

    limits: Limits
    clock: Callable[[], float] = time.monotonic
    _last_admitted: dict[int, float] = field(default_factory=dict)
    _in_flight: Counter[int] = field(default_factory=Counter)

    @property
    def in_flight(self) -> int:
        return self._in_flight.total()

    def admit(self, user_id: int) -> Refusal | None:
        """Let the member's request in (and count it) or say why not."""
        now = self.clock()
        if self._in_flight[user_id] >= self.limits.per_user:
            return Refusal("lyrics.own_song_in_progress")
        last = self._last_admitted.get(user_id)
        if last is not None and now - last < self.limits.cooldown_s:
            return Refusal("lyrics.just_asked", self.limits.cooldown_s - (now - last))
        self._in_flight[user_id] += 1
        self._last_admitted[user_id] = now
        if len(self._last_admitted) > 1024:  # forget members whose cooldown is long over
            self._last_admitted = {u: t for u, t in self._last_admitted.items() if now - t < self.limits.cooldown_s}
        return None

    def release(self, user_id: int) -> None:
        """The member's song is done (written, failed or abandoned)."""
        self._in_flight[user_id] -= 1
        if self._in_flight[user_id] <= 0:
            del self._in_flight[user_id]


# ---------------------------------------------------------------------------------------------
# the cog


class Lyrics(commands.Cog):
    """The /lyrics command and the 🎲 button (it implements views.ReplayHandler)."""

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        self.gate = Gate(bot.settings.limits)

    @app_commands.command(name=localized("commands.lyrics.name"), description=localized("commands.lyrics.description"))
    @app_commands.rename(
        seed=localized("commands.lyrics.seed"),
        temperature=localized("commands.lyrics.temperature"),
        length=localized("commands.lyrics.length"),
        rhyme=localized("commands.lyrics.rhyme"),
    )
    @app_commands.describe(
        seed=localized("commands.lyrics.seed_description"),
        temperature=localized("commands.lyrics.temperature_description"),
        length=localized("commands.lyrics.length_description"),
        rhyme=localized("commands.lyrics.rhyme_description"),
    )
    async def lyrics(
        self,
        interaction: discord.Interaction,
        seed: app_commands.Range[str, 1, SEED_MAX],
        temperature: app_commands.Range[float, TEMPERATURE_MIN, TEMPERATURE_MAX] = TEMPERATURE_DEFAULT,
        length: app_commands.Range[int, LENGTH_MIN, LENGTH_MAX] = LENGTH_DEFAULT,
        rhyme: app_commands.Range[str, 1, 10] | None = None,
    ) -> None:
        if problems := check_options(seed, float(temperature), float(length), rhyme, locale=interaction.locale):
            await tell(interaction, "\n".join(problems))
            return
        await self.write(interaction, seed.strip(), float(temperature), int(length), parse_rhyme(rhyme) or "auto")

    async def on_replay(self, interaction: discord.Interaction, song_id: int) -> None:
        """🎲: the same seed, temperature and length with a new random seed, as a new reply with its own buttons."""
        if self.bot.shutting_down:  # the store may be closing
            raise EngineClosedError("the bot is shutting down")
        # A busy database must not cost the click its 3 s: past a second, "thinking…" answers it meanwhile.
        song = await defer_if_slow(
            interaction,
            self.bot.store.visible_song(song_id, guild_id=interaction.guild_id, channel_id=interaction.channel_id),
            thinking=True,
        )
        if song is None:
            await tell(interaction, text(interaction.locale, "favourites.not_found", id=song_id))
            return
        await self.write(interaction, song.seed, song.temperature, song.length, song.rhyme)

    async def write(
        self, interaction: discord.Interaction, seed: str, temperature: float, length: int, rhyme: str = "auto"
    ) -> None:
        """Write a song for `interaction` and reply with it and its buttons; the options must be valid already.

        Both /lyrics and 🎲 come through here, so a replayed song passes the same gate (cooldown, songs
        in progress) and the same queue as a new one. The engine's refusals propagate to the tree's on_error.
        """
        if self.bot.shutting_down:
            raise EngineClosedError("the bot is shutting down")
        if not self.bot.engine.loaded:  # before the gate: asking without a model costs no cooldown
            raise ModelNotLoadedError("no model is loaded")
        user_id = interaction.user.id
        refusal = self.gate.admit(user_id)
        if refusal is not None:
            wait = refusal.retry_after
            if wait is None:  # waiting on the member's own song: estimate from the queue
                wait = self.bot.engine.estimated_wait(self.bot.engine.waiting + 1)
            locale = interaction.locale
            await tell(interaction, messages.retry_after(locale, text(locale, refusal.reason), wait))
            return
        try:
            async with self.bot.busy():
                await self._write(interaction, seed, temperature, length, rhyme)
        finally:
            self.gate.release(user_id)

    async def _write(
        self, interaction: discord.Interaction, seed: str, temperature: float, length: int, rhyme: str
    ) -> None:
        """Queue, defer, show the place while waiting, store, reply."""
        # The sampler's defaults are /lyrics' (line by line, several candidates per line, no copied lines).
        request = SampleRequest(
            seed=seed,
            temperature=temperature,
            length=length,
            random_seed=secrets.randbelow(RANDOM_SEEDS),
            rhyme=rhyme,
        )
        # Before the defer, so that a full queue is refused ephemerally. DMs share one server's share.
        ticket = self.bot.engine.submit(request, group=interaction.guild_id or DM_GUILD_ID)
        try:
            # forget-me drops the member's songs in progress (bot/forgetting.py): `tracked.forgotten`.
            with self.bot.forgetting.track(interaction.user.id, ticket, interaction.created_at) as tracked:
                await self._wait_and_reply(interaction, request, ticket, tracked)
        finally:
            ticket.cancel()  # a no-op once the song is written; otherwise it leaves the queue

    async def _wait_and_reply(
        self, interaction: discord.Interaction, request: SampleRequest, ticket: Ticket, tracked: Request
    ) -> None:
        # The "is thinking..." placeholder; generation may take seconds. thinking=True matters for a button
        # click, whose plain defer() would only acknowledge the click instead of promising a new message.
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        try:
            async with asyncio.timeout(self.bot.settings.limits.request_timeout_s):
                async for place in ticket.places(PLACE_EDIT_INTERVAL_S):
                    await self._show_place(interaction, place)
                generation = await ticket.result()
        except TimeoutError:
            timeout = self.bot.settings.limits.request_timeout_s
            log.warning("a song for user %d timed out after %.0fs", interaction.user.id, timeout)
            await tell(interaction, text(interaction.locale, "errors.too_slow"))
            return
        except asyncio.CancelledError:
            if not tracked.forgotten or _cancelling():
                raise
        if tracked.forgotten:
            await _dropped(interaction)
            return
        sample = generation.sample
        song_id = await self._store(interaction, request, sample.text, generation.model.bundle_hash, tracked)
        if tracked.forgotten:  # forgotten while it was being stored: it must not stay under their id
            if song_id is not None:
                await self.bot.store.delete_song(song_id)
            await _dropped(interaction)
            return
        card = messages.SongCard(
            text=sample.text,
            temperature=request.temperature,
            length=request.length,
            random_seed=request.random_seed,
            unknown=tuple(sample.unknown),
            song_id=song_id,
            rhyme=request.rhyme,
            rhyme_group=sample.rhyme,
        )
        # A song that could not be stored gets no buttons: they would point at no row.
        buttons = views.song_view(song_id, votes=0) if song_id is not None else None
        # content=None clears the place in the queue the message may have shown.
        embed = messages.song_embed(card, interaction.locale)
        message = await interaction.edit_original_response(content=None, embed=embed, view=buttons)
        if tracked.forgotten:  # forgotten while it was being posted (their forget deleted the song, or will)
            await _dropped(interaction)
            return
        if song_id is not None:
            try:
                await self.bot.store.set_message_id(song_id, message.id)
            except StoreError:
                log.exception("could not record the message of song %d", song_id)

    async def _show_place(self, interaction: discord.Interaction, place: int) -> None:
        """Show the member where their song waits; a failed edit costs the courtesy, not the song."""
        try:
            await interaction.edit_original_response(content=text(interaction.locale, "lyrics.queued", place=place))
        except discord.HTTPException as exc:
            log.info("could not show user %d their place in the queue: %s", interaction.user.id, exc)

    async def _store(
        self, interaction: discord.Interaction, request: SampleRequest, text: str, bundle_hash: str, tracked: Request
    ) -> int | None:
        """Keep the song (later buttons vote on it by id). A failure costs the buttons, not the song."""
        song = NewSong(
            guild_id=interaction.guild_id or DM_GUILD_ID,
            channel_id=interaction.channel_id or 0,
            author_id=interaction.user.id,
            seed=request.seed,
            temperature=request.temperature,
            length=request.length,
            random_seed=request.random_seed,
            bundle_hash=bundle_hash,
            text=text,
            rhyme=request.rhyme,
            asked_at=interaction.created_at,
        )
        try:
            return await self.bot.store.add_song(song)
        except MemberForgottenError:  # forget-me ran since, maybe in another process: the caller drops the song
            tracked.forgotten = True
            return None
        except StoreError as exc:
            log.error("could not store a song for user %d: %s", interaction.user.id, exc)
            return None


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (not merely the song it waited for)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _dropped(interaction: discord.Interaction) -> None:
    """The member was forgotten while their song was in progress: remove its public reply, tell them privately."""
    try:
        await interaction.delete_original_response()
    except discord.HTTPException as exc:
        log.info("could not remove the reply of a dropped song: %s", exc)
    await interaction.followup.send(text(interaction.locale, "lyrics.forgotten_song"), ephemeral=True)


async def setup(bot: LyricsBot) -> None:
    await bot.add_cog(Lyrics(bot))
