"""The message that follows a training run (`ProgressMessage`), and what keeps it current (`ProgressUpdater`).

An interaction's token only lasts 15 minutes, so before then the progress moves from the reply to an
ordinary channel message (or, where the bot may not post, the edits stop and say so). Edits are paced:
Discord rate-limits them, and a burst of epochs should cost one edit, not one each. A failed edit does not
stop the ones after it, and the outcome is always posted (`ProgressMessage.post_outcome`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import discord

from bot.exts.training.texts import moved_text
from bot.i18n import text
from bot.jobs import JobEnded
from bot.messages import CONTENT_LIMIT
from model.events import Event, StepEvent

log = logging.getLogger(__name__)

# An interaction token lasts 15 minutes; hand the progress over to a channel message a minute before.
TOKEN_LIFE_S = 15 * 60.0
EDIT_WINDOW_S = TOKEN_LIFE_S - 60.0
STEP_REFRESH_S = 30.0  # within a long epoch, show batch progress at most this often
PLOT_NAME = "loss-curve.png"


@dataclass
class ProgressMessage:
    """The message that follows a run: the interaction's reply, then (after EDIT_WINDOW_S) a channel message.

    An edit that fails is logged and the next update tries again; only a message that is gone (deleted)
    stops the edits. The outcome is posted whatever happened (`post_outcome`). /train status still shows
    everything.
    """

    interaction: discord.Interaction
    window: float = EDIT_WINDOW_S
    created: float = field(default_factory=time.monotonic)
    channel_message: discord.Message | None = None
    stopped: str | None = None  # why updates stopped, if they did
    failed_edits: int = 0

    def seconds_to_handover(self, now: float | None = None) -> float | None:
        """How long until the reply must move to a channel message; None once that is settled."""
        if self.channel_message is not None or self.stopped:
            return None
        return max(0.0, self.created + self.window - (now if now is not None else time.monotonic()))

    @property
    def token_valid(self) -> bool:
        """Whether the interaction's token still works (15 minutes): for follow-ups such as an ephemeral note."""
        return time.monotonic() < self.created + TOKEN_LIFE_S

    async def show(self, content: str, png: bytes | None = None) -> bool:
        """Replace the message's content (and attach `png`), moving it first if the token is about to expire.

        Returns whether the message shows `content` now.
        """
        if self.stopped:
            return False
        content = content[:CONTENT_LIMIT]
        try:
            if self.seconds_to_handover() == 0.0:
                await self._hand_over(content)
                if self.stopped:
                    return False
                if png is None:
                    return True
            files = [discord.File(io.BytesIO(png), PLOT_NAME)] if png else []
            if self.channel_message is not None:
                self.channel_message = await self.channel_message.edit(content=content, attachments=files)
            else:
                await self.interaction.edit_original_response(content=content, attachments=files)
        except discord.NotFound as exc:
            log.warning("the training progress message is gone (%s); no more edits", exc)
            self.stopped = "the message was deleted"
            return False
        except discord.HTTPException as exc:  # Discord down for a moment, a rate limit...: the next edit retries
            self.failed_edits += 1
            log.warning("could not update the training progress message (%s); the next update tries again", exc)
            return False
        return True

    async def post_outcome(self, content: str, png: bytes | None = None) -> None:
        """Show how the run ended, whatever happened to the progress message: edited into it if that works,
        else as a new message in the channel, else as a follow-up of the command (while its token lasts)."""
        if await self.show(content, png):
            return
        content = content[:CONTENT_LIMIT]
        channel = self.interaction.channel
        if isinstance(channel, discord.abc.Messageable):
            try:
                files = [discord.File(io.BytesIO(png), PLOT_NAME)] if png else []
                self.channel_message = await channel.send(content, files=files)
                return
            except discord.HTTPException as exc:
                log.warning("could not post the training outcome in the channel: %s", exc)
        if self.token_valid:
            try:
                await self.interaction.followup.send(content)
                return
            except discord.HTTPException as exc:
                log.warning("could not post the training outcome as a follow-up: %s", exc)
        log.error("the training outcome could not be posted anywhere; /train status shows it: %s", content)

    async def _hand_over(self, content: str) -> None:
        """Post the progress as a channel message (editable for good) and point the reply at it."""
        channel = self.interaction.channel
        try:
            if not isinstance(channel, discord.abc.Messageable):
                raise TypeError(f"cannot post in a {type(channel).__name__}")
            self.channel_message = await channel.send(content)
        except (discord.HTTPException, TypeError) as exc:
            log.info("cannot move the training progress to a channel message (%s); updates stop", exc)
            self.stopped = "a reply can only be edited for 15 minutes"
            await self.interaction.edit_original_response(
                content=(content + text(self.interaction.locale, "training.updates_stop"))[:CONTENT_LIMIT]
            )
            return
        await self.interaction.edit_original_response(
            content=moved_text(self.interaction.locale, self.channel_message.jump_url)
        )


class ProgressUpdater:
    """Edits the progress message as events arrive, never more often than every `interval` seconds.

    One edit at a time, from one task; events that arrive meanwhile are folded into the next edit (it
    renders the status as it is then), so a burst of epochs costs one edit, not one each.
    """

    def __init__(self, message: ProgressMessage, render: Callable[[], str], interval: float) -> None:
        self.message = message
        self.render = render
        self.interval = interval
        self._last_edit = time.monotonic()  # the reply itself counts
        self._shown = ""
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="training-progress")

    def on_event(self, event: Event | JobEnded) -> None:
        """A job listener: epochs and the like edit soon; batches only every STEP_REFRESH_S."""
        if isinstance(event, StepEvent) and time.monotonic() - self._last_edit < STEP_REFRESH_S:
            return
        self._wake.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):  # a timeout: time to hand the message over
                await asyncio.wait_for(self._wake.wait(), self.message.seconds_to_handover())
            self._wake.clear()
            handover_due = self.message.seconds_to_handover() == 0.0
            if not handover_due and self.render() == self._shown:  # e.g. a checkpoint right after its epoch
                continue
            if not await self.pace():
                return
            content = self.render()  # what is true now, after the wait
            await self.message.show(content)
            self._shown, self._last_edit = content, time.monotonic()

    async def pace(self) -> bool:
        """Wait until the next edit is allowed; False if stop() was called meanwhile."""
        delay = self._last_edit + self.interval - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        return not self._stop.is_set()

    async def stop(self, *, pace: bool = True) -> None:
        """Stop after the edit in flight (so it cannot land after the final one), then wait out the interval."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # a failed progress edit must not cost the run its outcome
                log.exception("the training progress updater failed")
        delay = self._last_edit + self.interval - time.monotonic()
        if pace and delay > 0:
            await asyncio.sleep(delay)
