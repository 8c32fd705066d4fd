"""/train start | status | cancel (admins) and /model info (everyone): retrain the model from chat.

The flow of one run:
  1. `/train start` checks the caller on OUR side (Discord's default_permissions is only a hint), refuses
     a second job, starts `python -m model train --progress jsonl` as a child process (bot.jobs) writing a
     candidate bundle beside the live one, and replies at once with a progress message;
  2. as epochs end, that message is edited (at most every LYRICS_TRAIN_UPDATE_INTERVAL seconds) with a
     progress bar, the losses and an ETA; an interaction's token only lasts 15 minutes, so before then the
     progress moves to an ordinary channel message (or, where the bot may not post, the edits stop and say so);
  3. when the child ends, the message shows the outcome: for a finished run, held-out bpc before and after
     and the loss curve; the candidate replaces the live model when it is better (or force:true, or there is
     no live model): the file by os.replace (atomic: same folder), the engine by engine.swap (songs being
     written finish on the old model). A failed run shows the last lines of its stderr; the live model
     keeps serving whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.engine import EngineError, ModelInfo
from bot.jobs import JobBusyError, JobError, JobManager, JobState, JobStatus, TrainArgs, TrainingJob, train_argv
from bot.permissions import ADMIN_ONLY, is_admin
from model.checkpoint import Bundle, BundleError, load_bundle

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

EPOCHS_MIN, EPOCHS_MAX = 1, 500
CANCEL_GRACE_S = 10.0  # /train cancel: SIGTERM, then SIGKILL after this long (the model stops at the next batch)
SHUTDOWN_GRACE_S = 3.0  # bot shutdown: less, so the whole shutdown fits in `docker stop`'s 10 s
FAREWELL_S = 3.0  # on shutdown, how long the progress message may take to say the run was stopped
# An interaction token lasts 15 minutes; hand the progress over to a channel message a minute before.
EDIT_WINDOW_S = 14 * 60.0
STEP_REFRESH_S = 30.0  # within a long epoch, show batch progress at most this often
BAR_WIDTH = 20
CONTENT_LIMIT = 2000  # Discord's limit on a message's content
PLOT_NAME = "loss-curve.png"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `python -m model` is found


# ---------------------------------------------------------------------------------------------
# what a run is and what came of it


@dataclass(frozen=True)
class RunOptions:
    """The options of one /train start."""

    epochs: int | None
    cell: str | None
    resume: bool
    force: bool

    def describe(self) -> str:
        parts = [f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}" if self.epochs else "default epochs"]
        if self.cell:
            parts.append(f"cell {self.cell}")
        if self.resume:
            parts.append("resuming from the checkpoint")
        if self.force:
            parts.append("force")
        return ", ".join(parts)


@dataclass(frozen=True)
class SwapDecision:
    """Whether the candidate replaces the live model, and why, in a sentence with the numbers."""

    swap: bool
    reason: str


def decide_swap(live: dict[str, Any] | None, candidate: dict[str, Any], *, force: bool) -> SwapDecision:
    """Compare held-out bits per character (metrics["bpc"], lower is better) of the live and the new model."""
    new = _metric(candidate, "bpc")
    old = _metric(live, "bpc") if live is not None else None
    if live is None:
        return SwapDecision(True, "There was no live model, so the new one is now live.")
    if force:
        return SwapDecision(True, "force:true was given, so the new model is now live whatever its score.")
    if new is None:
        return SwapDecision(False, "The new model has no held-out bpc to compare, so the live model stays.")
    if old is None:
        return SwapDecision(True, "The live model has no held-out bpc to compare against, so the new one is now live.")
    if new < old:
        return SwapDecision(True, f"The new model is better ({new:.3f} < {old:.3f} bpc), so it is now live.")
    return SwapDecision(False, f"The live model stays: its held-out bpc {old:.3f} is not worse than the new model's "
                               f"{new:.3f} (lower is better). Use force:true to swap anyway.")


def _metric(metrics: dict[str, Any] | None, key: str) -> float | None:
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass(frozen=True)
class Outcome:
    """The end of a run as the progress message shows it."""

    text: str
    png: bytes | None = None
    swapped: bool = False


@dataclass
class Run:
    """One /train start: the job, who asked, the message that follows it, and (at the end) its outcome."""

    job: TrainingJob
    options: RunOptions
    started_by: str
    candidate: Path
    progress: ProgressMessage | None = None
    outcome: Outcome | None = None
    cancelled_by: str | None = None
    follower: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def busy(self) -> bool:
        """Running, or finished but not yet concluded (the swap may be under way)."""
        return self.outcome is None


# ---------------------------------------------------------------------------------------------
# texts


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 42s."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def progress_text(run: Run, now: float | None = None) -> str:
    """The progress message while the job runs."""
    status = run.job.status
    head = f"**Training a new model** ({run.options.describe()}), started by {messages.escape(run.started_by)}."
    if status.training_since is None:
        return f"{head}\nReading the corpus and building the vocabulary… (elapsed {duration(status.elapsed(now))})"
    fraction = status.fraction_done()
    where = f"epoch {status.epoch}/{status.epochs}"
    if status.steps and status.step and status.epoch < status.epochs:
        where += f" · step {status.step}/{status.steps} of epoch {status.epoch + 1}"
    lines = [head, f"`{progress_bar(fraction)}` {fraction:.0%} · {where}"]
    if status.epoch > status.first_epoch or status.bpc is not None:
        lines.append(f"train loss {_num(status.train_loss)} · held-out loss {_num(status.heldout_loss)} · "
                     f"held-out bpc {_num(status.bpc)} (best {_num(status.best_bpc)}; "
                     f"character-trigram bar {_num(status.trigram_bpc)})")
    eta = status.eta(now)
    lines.append(f"elapsed {duration(status.elapsed(now))} · ETA "
                 + (f"{duration(eta)} at most (early stopping may end it sooner)" if eta is not None else "?"))
    if status.cancel_requested:
        lines.append("Cancelling…")
    return "\n".join(lines)


def failure_text(status: JobStatus, budget: int) -> str:
    """Why a run failed, with as much of its stderr tail as fits in `budget` characters."""
    text = f"**Training failed** after {duration(status.elapsed())}: {status.error or 'no reason given'}."
    text += "\nThe live model keeps serving."
    tail: list[str] = []
    room = budget - len(text) - 40
    for line in reversed(status.stderr_tail):
        line = line.replace("```", "'''")[:300]  # a stray code fence would end ours
        if room - len(line) - 1 < 0:
            break
        tail.insert(0, line)
        room -= len(line) + 1
    if tail:
        text += "\nLast lines of its stderr:\n```\n" + "\n".join(tail) + "\n```"
    else:
        text += "\n(It wrote nothing on stderr.)"
    return text


def cancelled_text(run: Run, checkpoint: Path) -> str:
    status = run.job.status
    who = f" by {messages.escape(run.cancelled_by)}" if run.cancelled_by else ""
    text = f"**Training cancelled**{who} after {duration(status.elapsed())}, at epoch {status.epoch}/{status.epochs}."
    if checkpoint.is_file():
        text += (f"\nThe last checkpoint is kept: `/train start resume:true` continues from it "
                 f"(pass a larger `epochs` than {status.epoch} to train further).")
    else:
        text += "\nNo epoch had finished, so there is no checkpoint to resume from."
    return text + "\nThe live model keeps serving."


def finished_text(status: JobStatus, live: dict[str, Any] | None, candidate: Bundle, decision: SwapDecision,
                  *, live_corpus: str | None) -> str:
    new = candidate.metrics
    before = _num(_metric(live, "bpc")) if live is not None else "none"
    lines = [
        f"**Training finished** in {duration(status.elapsed())}: {len(candidate.history)} epochs"
        + (" (stopped early: no better held-out score)" if status.early_stopped else "") + ".",
        f"Held-out bpc: live model {before} → new model {_num(_metric(new, 'bpc'))} "
        f"(network alone {_num(_metric(new, 'net_bpc'))}; character-trigram bar {_num(_metric(new, 'trigram_bpc'))}).",
    ]
    if live_corpus is not None and live_corpus != candidate.corpus_sha256:
        lines.append("Note: the corpus changed since the live model was trained, so the two scores are on "
                     "different held-out text.")
    lines.append(decision.reason)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the progress message


@dataclass
class ProgressMessage:
    """The message that follows a run: the interaction's reply, then (after EDIT_WINDOW_S) a channel message.

    Edits that fail (the message was deleted, the bot lost access) stop the updates rather than the run;
    /train status still shows everything.
    """

    interaction: discord.Interaction
    window: float = EDIT_WINDOW_S
    created: float = field(default_factory=time.monotonic)
    channel_message: discord.Message | None = None
    stopped: str | None = None  # why updates stopped, if they did

    def seconds_to_handover(self, now: float | None = None) -> float | None:
        """How long until the reply must move to a channel message; None once that is settled."""
        if self.channel_message is not None or self.stopped:
            return None
        return max(0.0, self.created + self.window - (now if now is not None else time.monotonic()))

    async def show(self, content: str, png: bytes | None = None) -> None:
        """Replace the message's content (and attach `png`), moving it first if the token is about to expire."""
        if self.stopped:
            return
        content = content[:CONTENT_LIMIT]
        try:
            if self.seconds_to_handover() == 0.0:
                await self._hand_over(content)
                if self.stopped or png is None:
                    return
            files = [discord.File(io.BytesIO(png), PLOT_NAME)] if png else []
            if self.channel_message is not None:
                self.channel_message = await self.channel_message.edit(
                    content=content, attachments=files, allowed_mentions=messages.NO_MENTIONS)
            else:
                await self.interaction.edit_original_response(
                    content=content, attachments=files, allowed_mentions=messages.NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("could not update the training progress message (%s); no more updates", exc)
            self.stopped = f"the message could not be edited ({exc.status})"

    async def _hand_over(self, content: str) -> None:
        """Post the progress as a channel message (editable for good) and point the reply at it."""
        channel = self.interaction.channel
        try:
            if not isinstance(channel, discord.abc.Messageable):
                raise TypeError(f"cannot post in a {type(channel).__name__}")
            self.channel_message = await channel.send(content, allowed_mentions=messages.NO_MENTIONS)
        except (discord.HTTPException, TypeError) as exc:
            log.info("cannot move the training progress to a channel message (%s); updates stop", exc)
            self.stopped = "a reply can only be edited for 15 minutes"
            await self.interaction.edit_original_response(
                content=(content + "\n*Updates stop here: Discord lets a reply be edited for 15 minutes only. "
                         "`/train status` shows the progress and the outcome.*")[:CONTENT_LIMIT],
                allowed_mentions=messages.NO_MENTIONS)
            return
        await self.interaction.edit_original_response(
            content=f"Training continues; its progress is now shown here: {self.channel_message.jump_url}\n"
                    "(Discord lets a reply be edited for 15 minutes only.)",
            allowed_mentions=messages.NO_MENTIONS)


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

    def on_event(self, event: dict[str, Any]) -> None:
        """A job listener: epochs and the like edit soon; batches only every STEP_REFRESH_S."""
        if event.get("event") == "step" and time.monotonic() - self._last_edit < STEP_REFRESH_S:
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
            except Exception:  # noqa: BLE001 - a failed progress edit must not cost the run its outcome
                log.exception("the training progress updater failed")
        delay = self._last_edit + self.interval - time.monotonic()
        if pace and delay > 0:
            await asyncio.sleep(delay)


# ---------------------------------------------------------------------------------------------
# the cog


def _plot(bundle: Bundle, title: str) -> bytes | None:
    # Imported here: matplotlib takes a second or two to import, which the bot's start-up need not pay.
    from bot.plots import loss_curve_png

    return loss_curve_png(bundle.history, title=title, trigram_bpc=_metric(bundle.metrics, "trigram_bpc"))


def _sibling(path: Path, tag: str) -> Path:
    """models/lyrics.pt -> models/lyrics.<tag>.pt: beside the live bundle, so os.replace onto it is atomic."""
    return path.with_name(f"{path.stem}.{tag}{path.suffix or '.pt'}")


class Training(commands.Cog):
    """/train (admins) and /model info."""

    train = app_commands.Group(
        name="train", description="重新训练模型 · Retrain the lyrics model (admins)",
        # A hint for Discord's client only: every command below checks is_admin itself.
        default_permissions=discord.Permissions(administrator=True))
    model = app_commands.Group(name="model", description="关于模型 · About the model that writes the lyrics")

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.jobs = JobManager()
        self.run: Run | None = None  # the running run, or the last one
        self.edit_window = EDIT_WINDOW_S
        self._closing = False

    @property
    def candidate_path(self) -> Path:
        return _sibling(self.settings.model_path, "candidate")

    @property
    def checkpoint_path(self) -> Path:
        return self.candidate_path.with_suffix(".ckpt")  # where `python -m model train` puts it

    async def cog_load(self) -> None:
        self.bot.add_cleanup(self.shut_down)

    async def cog_unload(self) -> None:
        await self.shut_down()

    # ---- /train start

    @train.command(name="start", description="开始训练 · Train a new model on the corpus; it goes live if better")
    @app_commands.describe(
        epochs=f"训练轮数 ({EPOCHS_MIN}–{EPOCHS_MAX}; default: the model's) · Epochs to train",
        cell="循环单元 · Recurrent cell (default: the model's)",
        resume="从上次的检查点继续 · Continue from the last checkpoint of a cancelled or finished run",
        force="即使更差也替换 · Make the new model live even if it scores worse",
    )
    async def start(
        self,
        interaction: discord.Interaction,
        epochs: app_commands.Range[int, EPOCHS_MIN, EPOCHS_MAX] | None = None,
        cell: Literal["gru", "lstm", "rnn"] | None = None,
        resume: bool = False,
        force: bool = False,
    ) -> None:
        if not is_admin(interaction, self.settings):
            await _ephemeral(interaction, ADMIN_ONLY)
            return
        # discord.py does not re-check option bounds; a hand-made payload could send anything.
        if epochs is not None and not EPOCHS_MIN <= epochs <= EPOCHS_MAX:
            await _ephemeral(interaction, f"epochs must be a whole number from {EPOCHS_MIN} to {EPOCHS_MAX}.")
            return
        if cell not in (None, "gru", "lstm", "rnn"):
            await _ephemeral(interaction, "cell must be gru, lstm or rnn.")
            return
        if self.bot.shutting_down or self._closing:
            await _ephemeral(interaction, messages.SHUTTING_DOWN)
            return
        if self.run is not None and self.run.busy:
            await _ephemeral(interaction, "A training job is already running; one at a time. "
                                          "`/train cancel` stops it.\n\n" + self._status_text())
            return
        if problem := self._cannot_start(resume):
            await _ephemeral(interaction, problem)
            return
        options = RunOptions(epochs=epochs, cell=cell, resume=resume, force=force)
        try:
            job = await self.jobs.start(train_argv(self._train_args(options)), env=self._child_env())
        except JobBusyError:  # a start raced this one between the check above and here
            await _ephemeral(interaction, "A training job is already running.\n\n" + self._status_text())
            return
        except (JobError, OSError) as exc:
            log.error("could not start training: %s", exc)
            await _ephemeral(interaction, f"Could not start training: {exc}")
            return
        run = Run(job=job, options=options, started_by=interaction.user.display_name, candidate=self.candidate_path)
        self.run = run
        log.info("%s (%d) started training: %s", interaction.user, interaction.user.id, options.describe())
        try:
            await interaction.response.send_message(progress_text(run), allowed_mentions=messages.NO_MENTIONS)
            run.progress = ProgressMessage(interaction, window=self.edit_window)
        except discord.HTTPException as exc:  # the run goes on; /train status still follows it
            log.warning("could not reply to /train start (%s); training continues without a progress message", exc)
        run.follower = asyncio.create_task(self._follow(run), name="training-follower")

    def _cannot_start(self, resume: bool) -> str | None:
        """Why a run could not even begin, checked here so the admin hears it at once, not from a failed job."""
        corpus = self.settings.corpus_path
        if not corpus.is_file():
            return f"There is no corpus at `{corpus}`: put the lyrics there (LYRICS_CORPUS) and try again."
        if resume and not self.checkpoint_path.is_file():
            return (f"There is no checkpoint to resume from (`{self.checkpoint_path}`): "
                    "start without resume, or after a run that finished at least one epoch.")
        return None

    def _train_args(self, options: RunOptions) -> TrainArgs:
        settings = self.settings
        return TrainArgs(corpus=settings.corpus_path, out=self.candidate_path, epochs=options.epochs,
                         cell=options.cell, resume=options.resume, device=settings.device,
                         threads=settings.train.threads, processes=settings.train.processes,
                         extra=settings.train.args)

    @staticmethod
    def _child_env() -> dict[str, str]:
        """The child imports the same `model` package as the bot, wherever the bot is started from."""
        paths = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}

    # ---- following a run to its end

    async def _follow(self, run: Run) -> None:
        """Edit the progress message as the job goes, then conclude: compare, swap, report."""
        updater = None
        if run.progress is not None:
            updater = ProgressUpdater(run.progress, lambda: progress_text(run), self.settings.train.update_s)
            run.job.add_listener(updater.on_event)
            updater.start()
        try:
            status = await run.job.wait()
            if updater is not None:
                # Shutting down there is no time to wait out the edit interval (discord.py still obeys 429s).
                await updater.stop(pace=not self._closing)
            run.outcome = await self._conclude(run, status)
        except asyncio.CancelledError:  # shutdown gave up waiting for us
            run.outcome = run.outcome or Outcome("**Training stopped**: the bot shut down.")
            raise
        except Exception:  # noqa: BLE001 - whatever went wrong, the run must end (or /train stays busy)
            log.exception("concluding the training run failed")
            run.outcome = Outcome("**Training ended, but the bot could not evaluate the result** (logged). "
                                  "The live model keeps serving.")
        finally:
            if updater is not None:
                run.job.remove_listener(updater.on_event)
        if run.progress is not None:
            await run.progress.show(run.outcome.text, run.outcome.png)

    async def _conclude(self, run: Run, status: JobStatus) -> Outcome:
        if status.state is JobState.CANCELLED:
            return Outcome(cancelled_text(run, self.checkpoint_path))
        if status.state is not JobState.FINISHED:
            return Outcome(failure_text(status, budget=CONTENT_LIMIT))
        try:
            candidate = await asyncio.to_thread(load_bundle, run.candidate)
        except BundleError as exc:
            return Outcome(f"**Training finished, but its bundle is unusable**: {exc}\nThe live model keeps serving.")
        live = self.bot.engine.info
        live_metrics = dict(live.metrics) if live else None
        live_corpus = await self._live_corpus_hash(live)
        decision = decide_swap(live_metrics, candidate.metrics, force=run.options.force)
        text = finished_text(status, live_metrics, candidate, decision, live_corpus=live_corpus)
        swapped = False
        if decision.swap:
            try:
                await self._install(run.candidate)
                swapped = True
            except (OSError, BundleError, EngineError) as exc:
                log.error("could not make the new model live: %s", exc)
                text += f"\n**But it could not be made live**: {exc}. The previous model keeps serving."
        else:
            text += f"\nThe new bundle is kept at `{run.candidate}`."
        png = await asyncio.to_thread(_plot, candidate, "new model")
        return Outcome(text, png, swapped)

    async def _live_corpus_hash(self, live: ModelInfo | None) -> str | None:
        if live is None:
            return None
        if live.bundle is not None:
            return live.bundle.corpus_sha256
        try:
            return (await asyncio.to_thread(load_bundle, live.path)).corpus_sha256
        except BundleError:
            return None

    async def _install(self, candidate: Path) -> None:
        """Make `candidate` the live bundle: on disk (atomically, keeping the old one as *.previous) and in the
        engine. If the engine cannot load it, the old file is put back, so a restart serves what serves now."""
        live = self.settings.model_path
        previous = _sibling(live, "previous")
        had_live = live.is_file()

        def replace_files() -> None:
            if had_live:
                previous.unlink(missing_ok=True)
                try:
                    os.link(live, previous)  # a second name for the old file: instant, no copy
                except OSError:  # a filesystem without hard links
                    shutil.copy2(live, previous)
            os.replace(candidate, live)  # same folder: readers see the old file or the new one, never half

        await asyncio.to_thread(replace_files)
        try:
            info = await self.bot.engine.swap(live)
        except Exception:
            # Put the files back as they were: the old bundle live, the new one a candidate again.
            await asyncio.to_thread(os.replace, live, candidate)
            if had_live:
                await asyncio.to_thread(os.replace, previous, live)
            raise
        log.info("the new model is live: bundle %s, %s", info.bundle_hash[:12], info.metrics.get("bpc"))

    # ---- /train status and /train cancel

    @train.command(name="status", description="训练进度 · The training job's progress")
    async def status(self, interaction: discord.Interaction) -> None:
        if not is_admin(interaction, self.settings):
            await _ephemeral(interaction, ADMIN_ONLY)
            return
        await _ephemeral(interaction, self._status_text())

    def _status_text(self) -> str:
        run = self.run
        if run is None:
            live = self.bot.engine.info
            score = f"held-out bpc {_num(_metric(live.metrics, 'bpc'))}" if live else "no model loaded"
            return f"Idle: no training job has run since the bot started. The live model: {score}."
        state = run.job.status.state
        if run.outcome is not None:
            return f"State: {state}.\n{run.outcome.text}"
        if state is JobState.RUNNING:
            text = f"State: running.\n{progress_text(run)}"
            if run.progress is not None and run.progress.stopped:
                text += f"\n(The progress message stopped updating: {run.progress.stopped}.)"
            return text
        return f"State: {state}; the bot is concluding the run (comparing and swapping the model)."

    @train.command(name="cancel", description="取消训练 · Stop the training job; its last checkpoint is kept")
    async def cancel(self, interaction: discord.Interaction) -> None:
        if not is_admin(interaction, self.settings):
            await _ephemeral(interaction, ADMIN_ONLY)
            return
        run = self.run
        if run is None or run.job.done:
            await _ephemeral(interaction, "No training job is running.")
            return
        run.cancelled_by = interaction.user.display_name
        await interaction.response.send_message("Cancelling the training job…", allowed_mentions=messages.NO_MENTIONS)
        log.info("%s (%d) cancelled training", interaction.user, interaction.user.id)
        status = await run.job.cancel(CANCEL_GRACE_S)
        if status.state is JobState.CANCELLED:
            text = cancelled_text(run, self.checkpoint_path)
        else:  # it ended some other way before the signal arrived
            text = f"The training job had already ended: {status.state}."
        await _edit(interaction, text)

    # ---- /model info

    @model.command(name="info", description="当前模型 · The live model: settings, scores and loss curve")
    async def info(self, interaction: discord.Interaction) -> None:
        live = self.bot.engine.info
        if live is None:
            await _ephemeral(interaction, messages.no_model(self.settings.corpus_path, self.settings.model_path,
                                                            train_command=True))
            return
        await interaction.response.defer()  # drawing the curve takes a moment
        # The engine holds the live bundle: describe what serves, not whatever the file holds now.
        bundle = live.bundle
        if bundle is None:
            try:
                bundle = await asyncio.to_thread(load_bundle, live.path)
            except BundleError as exc:
                await _edit(interaction, f"The live model's file cannot be read now: {exc}")
                return
        png = await asyncio.to_thread(_plot, bundle, live.path.name)
        embed = model_embed(bundle, live)
        files = []
        if png is not None:
            files.append(discord.File(io.BytesIO(png), PLOT_NAME))
            embed.set_image(url=f"attachment://{PLOT_NAME}")
        await interaction.edit_original_response(embed=embed, attachments=files, allowed_mentions=messages.NO_MENTIONS)

    # ---- errors and shutdown

    async def cog_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        log.error("/%s failed", interaction.command.qualified_name if interaction.command else "?", exc_info=error)
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await _edit(interaction, "Something went wrong (出错了). It has been logged.")
            else:
                await _ephemeral(interaction, "Something went wrong (出错了). It has been logged.")

    async def shut_down(self) -> None:
        """Stop the child (SIGTERM, grace, SIGKILL, reap) and let the progress message say so. Idempotent."""
        self._closing = True
        run = self.run
        if run is not None and not run.job.done:
            run.cancelled_by = "a bot restart"
        await self.jobs.close(SHUTDOWN_GRACE_S)
        if run is not None and run.follower is not None and not run.follower.done():
            done, _ = await asyncio.wait({run.follower}, timeout=FAREWELL_S)
            if not done:
                run.follower.cancel()


def model_embed(bundle: Bundle, live: ModelInfo) -> discord.Embed:
    """/model info: what the live model is, how it was trained, and how well it does on held-out text."""
    config = bundle.net.config
    metrics = bundle.metrics
    bpc, net_bpc, bar = (_metric(metrics, key) for key in ("bpc", "net_bpc", "trigram_bpc"))
    verdict = ""
    if bpc is not None and bar is not None:
        verdict = (f"\nbeats the character-trigram bar by {bar - bpc:.3f} bpc" if bpc < bar
                   else f"\ndoes not beat the character-trigram bar ({bpc - bar:.3f} bpc worse)")
    embed = discord.Embed(title="The live model (当前模型)", colour=messages.EMBED_COLOUR)
    embed.add_field(name="Network", inline=False, value=(
        f"{config.cell.upper()} · {config.layers} layer{'s' if config.layers != 1 else ''} · hidden {config.hidden} · "
        f"embedding {config.embed} · vocabulary {config.vocab_size:,} words"
        f"{' · tied embeddings' if config.tie_weights else ''} · dropout {config.dropout:g}"))
    train_config = bundle.train_config
    embed.add_field(name="Training", inline=False, value=(
        f"{_trained_at(bundle.created_at)} · {len(bundle.history)} epochs"
        f" ({duration(_metric(metrics, 'seconds'))}) · batch {train_config.get('batch_size', '?')} × "
        f"{train_config.get('seq_len', '?')} tokens · lr {train_config.get('lr', '?')}"))
    embed.add_field(name="Corpus", inline=False,
                    value=f"`{Path(str(train_config.get('corpus', '?'))).name}` · sha256 `{bundle.corpus_sha256[:16]}`")
    embed.add_field(name="Held-out bits per character (lower is better)", inline=False, value=(
        f"**{_num(bpc)}** served (network + n-gram mixture) · {_num(net_bpc)} network alone · "
        f"{_num(bar)} character trigram{verdict}"))
    footer = f"bundle {live.bundle_hash[:12]} · {live.path.name}"
    if bundle.sha256 != live.bundle_hash:
        footer += " · the file on disk has changed since it was loaded: these figures are the file's"
    embed.set_footer(text=footer)
    return embed


def _trained_at(created_at: str) -> str:
    """A Discord timestamp (shown in each reader's time zone) when the bundle's ISO date parses."""
    try:
        return discord.utils.format_dt(datetime.fromisoformat(created_at), "f")
    except ValueError:
        return created_at or "unknown date"


async def _ephemeral(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer (refusals, status): only the member who asked sees it."""
    await interaction.response.send_message(text[:CONTENT_LIMIT], ephemeral=True,
                                            allowed_mentions=messages.NO_MENTIONS)


async def _edit(interaction: discord.Interaction, text: str) -> None:
    await interaction.edit_original_response(content=text[:CONTENT_LIMIT], allowed_mentions=messages.NO_MENTIONS)


async def setup(bot: LyricsBot) -> None:
    await bot.add_cog(Training(bot))
