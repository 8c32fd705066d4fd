"""The Training cog: /train start | status | cancel (the bot's owners) and /model info (everyone).

A run's life, function by function:
  start          checks the options and whether a run can begin, starts the child (bot.jobs), replies at once
  _follow        keeps the progress message current (progress.ProgressUpdater) until the child ends
  _conclude      turns the child's end into an Outcome: for a finished run, bot.promotion decides and swaps
  status/cancel  /train status and /train cancel, at any time

The child is kept apart from what it has no use for, and from the runs before and after it:
  * its environment lacks the bot's secrets (CHILD_SECRETS: the Discord token, the database's URL and libpq's
    PG* variables): a child that crashes or is inspected cannot leak them;
  * it stops when the bot does, even one killed outright: it is told the bot's pid (model.lifeline);
  * each run trains to files of its own (lyrics.candidate-<run>.pt and .ckpt), so an earlier run's child still
    writing cannot overwrite them, and the bundle promoted is the very file the engine loaded and bot.promotion
    judged. Once the run has concluded, what is left (a bundle not promoted, the last checkpoint) moves to the
    usual names (lyrics.candidate.pt, lyrics.candidate.ckpt), where `force` and `resume:true` find it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import i18n, messages
from bot.engine import ModelInfo
from bot.exts.training import texts
from bot.exts.training.options import StartOptions, slash_options
from bot.exts.training.progress import EDIT_WINDOW_S, PLOT_NAME, ProgressMessage, ProgressUpdater
from bot.i18n import Locale, localized
from bot.jobs import JobBusyError, JobError, JobManager, JobState, JobStatus, TrainingJob, train_argv
from bot.messages import CONTENT_LIMIT
from bot.permissions import ShuttingDown, owner_only
from bot.promotion import Promoter, metric, rescore_on, sibling
from bot.replies import answer, tell
from model.checkpoint import Bundle, BundleError
from model.config import checkpoint_path
from model.corpus import added_files
from model.lifeline import PARENT_ENV

if TYPE_CHECKING:
    from bot.client import LyricsBot

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 10.0  # /train cancel: SIGTERM, then SIGKILL after this long (the model stops at the next batch)
SHUTDOWN_GRACE_S = 3.0  # bot shutdown: less, so the whole shutdown fits in `docker stop`'s 10 s
FAREWELL_S = 3.0  # on shutdown, how long the progress message may take to say the run was stopped
MODEL_INFO_COOLDOWN_S = 30.0  # /model info posts publicly, with a picture: once per channel in this long
PROJECT_ROOT = Path(__file__).resolve().parents[3]  # where `python -m model` is found
# The training child never talks to Discord or the database: it gets neither's credentials.
CHILD_SECRETS = ("DISCORD_TOKEN", "LYRICS_DATABASE_URL")
CHILD_SECRET_PREFIXES = ("PG",)  # libpq reads PGPASSWORD, PGHOST, PGSERVICEFILE...: none is the child's business


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
    options: StartOptions
    started_by: str
    candidate: Path
    corpus: str = ""  # what it trains on, in words: the base corpus and how many added files
    locale: Locale = None  # the language of who started it: its messages, the progress included, speak it
    progress: ProgressMessage | None = None
    outcome: Outcome | None = None
    cancelled_by: str | None = None
    follower: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def busy(self) -> bool:
        """Running, or finished but not yet concluded (the swap may be under way). A run cancelled or failed
        has nothing to compare or swap: once its child is gone it holds up no other, while its progress
        message still says how it ended."""
        if self.outcome is not None:
            return False
        return not self.job.done or self.job.status.state is JobState.FINISHED

    def progress_text(self) -> str:
        return texts.progress_text(
            self.locale,
            self.job.status,
            options=self.options.describe(self.locale),
            started_by=self.started_by,
            corpus=self.corpus,
        )


def child_secrets(environ: os._Environ[str] | dict[str, str] = os.environ) -> list[str]:
    """The variables the training child does not inherit (CHILD_SECRETS, and every PG* one set here)."""
    return [*CHILD_SECRETS, *(name for name in environ if name.startswith(CHILD_SECRET_PREFIXES))]


def _plot(bundle: Bundle, title: str) -> bytes | None:
    # Imported here: matplotlib takes a second or two to import, which the bot's start-up need not pay.
    from bot.plots import loss_curve_png

    return loss_curve_png(bundle.history, title=title, trigram_bpc=metric(bundle.metrics, "trigram_bpc"))


class Training(commands.Cog):
    """/train (the bot's owners) and /model info."""

    train = app_commands.Group(
        name=localized("commands.train.name"),
        description=localized("commands.train.description"),
        # A hint for Discord's client only (it hides the group from members without Administrator): every
        # command below is @owner_only, checked on our side, because the model is shared by every server.
        default_permissions=discord.Permissions(administrator=True),
    )
    model = app_commands.Group(
        name=localized("commands.model.name"), description=localized("commands.model.description")
    )

    def __init__(self, bot: LyricsBot) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.jobs = JobManager()
        self.run: Run | None = None  # the running run, or the last one
        self.edit_window = EDIT_WINDOW_S
        self._closing = False
        self._chart: tuple[str, bytes | None] | None = None  # (bundle hash, its loss curve) for /model info
        self._chart_lock = asyncio.Lock()
        self.charts_drawn = 0

    @property
    def candidate_path(self) -> Path:
        """Where a run writes its bundle: beside the live one, so that promoting it is an atomic rename."""
        return sibling(self.settings.model_path, "candidate")

    @property
    def checkpoint_path(self) -> Path:
        """Where the last run's checkpoint is kept for `resume:true`."""
        return checkpoint_path(self.candidate_path)

    def _run_candidate(self, run_id: str) -> Path:
        """The bundle one run writes: its own file, beside the live one (promoting it is an atomic rename)."""
        return sibling(self.settings.model_path, f"candidate-{run_id}")

    def _leftovers(self) -> list[Path]:
        """Files of runs that never concluded (a bot killed mid-run): runs write nowhere else."""
        model = self.settings.model_path
        pattern = self._run_candidate("*").name
        return [
            *model.parent.glob(pattern),
            *model.parent.glob(checkpoint_path(Path(pattern)).name),
        ]

    async def cog_load(self) -> None:
        self.bot.add_cleanup(self.shut_down)
        self.bot.add_abort(self.jobs.kill)  # a second SIGTERM must not leave the child training alone

    async def cog_unload(self) -> None:
        await self.shut_down()

    # ---- /train start

    @train.command(name=localized("commands.train.start"), description=localized("commands.train.start_description"))
    @owner_only()
    @slash_options(StartOptions)
    async def start(self, interaction: discord.Interaction, **values: Any) -> None:
        options = StartOptions(**values)
        if problems := options.problems(interaction.locale):
            await tell(interaction, "\n".join(problems))
            return
        locale = interaction.locale
        if self.bot.shutting_down or self._closing:
            raise ShuttingDown("the bot is shutting down")
        if (self.run is not None and self.run.busy) or self.jobs.running is not None:
            await tell(interaction, texts.already_running(locale, self._status_text(locale)))
            return
        if problem := self._cannot_start(locale, options):
            await tell(interaction, problem)
            return
        added = self._added_files()
        try:
            candidate = self._prepare_run(options)
            job = await self.jobs.start(
                self._argv(options, bool(added), out=candidate), env=self._child_env(), unset=child_secrets()
            )
        except JobBusyError:  # a start raced this one between the check above and here
            await tell(interaction, texts.already_running(locale, self._status_text(locale)))
            return
        except (JobError, OSError) as exc:
            log.error("could not start training: %s", exc)
            await tell(interaction, texts.could_not_start(locale, exc))
            return
        run = Run(
            job=job,
            options=options,
            started_by=interaction.user.display_name,
            candidate=candidate,
            corpus=texts.corpus_words(locale, self.settings.corpus_path, added),
            locale=locale,
        )
        self.run = run
        log.info("%s (%d) started training: %s", interaction.user, interaction.user.id, options.describe())
        try:
            await answer(interaction, run.progress_text())  # deferred first if handed over (bot/relay.py)
            run.progress = ProgressMessage(interaction, window=self.edit_window)
        except discord.HTTPException as exc:  # the run goes on; /train status still follows it
            log.warning("could not reply to /train start (%s); training continues without a progress message", exc)
        run.follower = asyncio.create_task(self._follow(run), name="training-follower")

    def _cannot_start(self, locale: Locale, options: StartOptions) -> str | None:
        """Why a run could not even begin, checked here so the admin hears it at once, not from a failed job."""
        if not self.settings.corpus_path.is_file():
            return texts.no_corpus(locale, self.settings.corpus_path)
        if options.resume and not self.checkpoint_path.is_file():
            return texts.no_checkpoint(locale, self.checkpoint_path)
        return None

    def _prepare_run(self, options: StartOptions) -> Path:
        """This run's bundle path: its own, with the kept checkpoint beside it when it resumes. Files of runs
        that never concluded go first (no run is busy: nothing writes them any more)."""
        if self.run is not None:
            self._keep_files(self.run)  # a failed run's checkpoint, if its conclusion has not moved it yet
        for leftover in self._leftovers():
            log.info("removing %s, left by a run that never concluded", leftover)
            leftover.unlink(missing_ok=True)
        candidate = self._run_candidate(secrets.token_hex(4))
        if options.resume:
            shutil.copy2(self.checkpoint_path, checkpoint_path(candidate))
        return candidate

    def _keep_files(self, run: Run) -> None:
        """Move what a run left under its own names to the usual ones, once it has concluded. Idempotent."""
        for own, usual in (
            (checkpoint_path(run.candidate), self.checkpoint_path),
            (run.candidate, self.candidate_path),
        ):
            try:
                os.replace(own, usual)
            except FileNotFoundError:
                pass  # never written (an early cancel), promoted, or moved already
            except OSError as exc:
                log.error("could not keep %s as %s: %s", own, usual, exc)

    def _added_files(self) -> list[Path]:
        """The files /corpus add stored: the child reads them itself, this only says how many there are."""
        folder = self.settings.corpora_path
        return added_files(folder) if folder.is_dir() else []

    def _argv(self, options: StartOptions, added: bool = False, *, out: Path | None = None) -> list[str]:
        """The child's command line: the deployment's settings, LYRICS_TRAIN_ARGS, then this run's options.
        It writes its bundle (and its checkpoint beside it) to `out`, this run's own file.

        With files added from chat (`added`), the child reads that folder too: they join the training part
        only, and the held-out text stays the base corpus' tail.
        """
        settings = self.settings
        fixed: dict[str, Any] = {
            "corpus": settings.corpus_path,
            "out": out or self.candidate_path,
            "device": settings.device,
            "threads": settings.train.threads,
        }
        if added:
            fixed["added_corpora"] = settings.corpora_path
        return train_argv(fixed, options.child_options(), extra=settings.train.args, processes=settings.train.processes)

    @staticmethod
    def _child_env() -> dict[str, str]:
        """The child imports the same `model` package as the bot, wherever the bot is started from, and stops
        when this process is gone (model.lifeline)."""
        paths = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), PARENT_ENV: str(os.getpid())}

    # ---- following a run to its end

    async def _follow(self, run: Run) -> None:
        """Edit the progress message as the job goes, then conclude: compare, swap, report."""
        updater = None
        if run.progress is not None:
            updater = ProgressUpdater(run.progress, run.progress_text, self.settings.train.update_s)
            run.job.add_listener(updater.on_event)
            updater.start()
        try:
            status = await run.job.wait()
            if updater is not None:
                # Shutting down there is no time to wait out the edit interval (discord.py still obeys 429s).
                await updater.stop(pace=not self._closing)
            run.outcome = await self._conclude(run, status)
        except asyncio.CancelledError:  # shutdown gave up waiting for us
            run.outcome = run.outcome or Outcome(i18n.text(run.locale, "training.shut_down"))
            raise
        except Exception:  # whatever went wrong, the run must end (or /train stays busy)
            log.exception("concluding the training run failed")
            run.outcome = Outcome(i18n.text(run.locale, "training.not_evaluated"))
        finally:
            if updater is not None:
                run.job.remove_listener(updater.on_event)
        if run.progress is not None:
            await run.progress.post_outcome(run.outcome.text, run.outcome.png)
        if run.job.status.state is JobState.FAILED:
            await self._report_stderr(run)

    async def _report_stderr(self, run: Run) -> None:
        """A failed run's stderr goes to the log and to the owner who started it, never to the public message."""
        status = run.job.status
        tail = "\n".join(status.stderr_tail)
        log.warning("training failed: %s; the last lines of its stderr:\n%s", status.error, tail)
        progress = run.progress
        if progress is None or not progress.token_valid:
            return  # /train status shows the lines to the owners
        try:
            await progress.interaction.followup.send(texts.stderr_text(run.locale, status), ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not send the stderr of the failed run to the owner who started it: %s", exc)

    async def _conclude(self, run: Run, status: JobStatus) -> Outcome:
        """The outcome of a run that ended; a finished one is handed to bot.promotion, which decides the swap."""
        if status.state is not JobState.FINISHED:
            self._keep_files(run)
            if status.state is JobState.CANCELLED:
                cancelled_by = run.cancelled_by
                text = texts.cancelled_text(
                    run.locale, status, cancelled_by=cancelled_by, checkpoint=self.checkpoint_path
                )
                return Outcome(text)
            return Outcome(texts.failure_text(run.locale, status))
        try:
            # A live model scored on other held-out text is re-scored on this run's: the base corpus it trained on.
            promoter = Promoter(self.bot.engine, rescore=rescore_on(self.settings.corpus_path))
            promotion = await promoter.promote(run.candidate, self.settings.model_path, force=run.options.force)
        except BundleError as exc:
            return Outcome(texts.unusable_text(run.locale, exc))
        finally:
            self._keep_files(run)
        text = texts.finished_text(run.locale, status, promotion, kept_at=self.candidate_path)
        png = await asyncio.to_thread(_plot, promotion.candidate, "new model")
        return Outcome(text, png, promotion.swapped)

    # ---- /train status and /train cancel

    @train.command(name=localized("commands.train.status"), description=localized("commands.train.status_description"))
    @owner_only()
    async def status(self, interaction: discord.Interaction) -> None:
        await tell(interaction, self._status_text(interaction.locale))

    def _status_text(self, locale: Locale) -> str:
        run = self.run
        if run is None:
            return texts.idle_text(locale, self.bot.engine.info)
        state = run.job.status.state
        if run.outcome is not None:
            reply = i18n.text(locale, "training.state", state=texts.state_words(locale, state), text=run.outcome.text)
            if state is JobState.FAILED:  # /train status is ephemeral and for owners only
                reply += "\n" + texts.stderr_text(locale, run.job.status, budget=CONTENT_LIMIT - len(reply) - 1)
            return reply
        if state is JobState.RUNNING:
            reply = i18n.text(locale, "training.state_running", text=run.progress_text())
            if run.progress is not None and run.progress.stopped:
                reply += i18n.text(locale, "training.stopped_updating", reason=run.progress.stopped)
            return reply
        return texts.concluding_text(locale, state)

    @train.command(name=localized("commands.train.cancel"), description=localized("commands.train.cancel_description"))
    @owner_only()
    async def cancel(self, interaction: discord.Interaction) -> None:
        run = self.run
        locale = interaction.locale
        if run is None or run.job.done:
            await tell(interaction, i18n.text(locale, "training.not_running"))
            return
        run.cancelled_by = interaction.user.display_name
        await answer(interaction, i18n.text(locale, "training.cancelling"))
        log.info("%s (%d) cancelled training", interaction.user, interaction.user.id)
        status = await run.job.cancel(CANCEL_GRACE_S)
        if status.state is JobState.CANCELLED:
            self._keep_files(run)  # before saying whether there is a checkpoint to resume from
            reply = texts.cancelled_text(locale, status, cancelled_by=run.cancelled_by, checkpoint=self.checkpoint_path)
        else:  # it ended some other way before the signal arrived
            reply = texts.already_ended(locale, status.state)
        await interaction.edit_original_response(content=reply)

    # ---- /model info

    @model.command(name=localized("commands.model.info"), description=localized("commands.model.info_description"))
    # Public and with a picture: once per channel every MODEL_INFO_COOLDOWN_S (on_error says when to come back).
    @app_commands.checks.cooldown(1, MODEL_INFO_COOLDOWN_S, key=lambda i: (i.guild_id, i.channel_id))
    async def info(self, interaction: discord.Interaction) -> None:
        live = self.bot.engine.info
        if live is None:
            settings = self.settings
            no_model = messages.no_model(
                interaction.locale, settings.corpus_path, settings.model_path, train_command=True
            )
            await tell(interaction, no_model)
            return
        await interaction.response.defer()  # drawing the curve (the first time) takes a moment
        # The engine holds the live bundle: describe what serves, not whatever the file holds now.
        png = await self._chart_of(live)
        embed = texts.model_embed(live, interaction.locale)
        files = []
        if png is not None:
            files.append(discord.File(io.BytesIO(png), PLOT_NAME))
            embed.set_image(url=f"attachment://{PLOT_NAME}")
        await interaction.edit_original_response(embed=embed, attachments=files)

    async def _chart_of(self, live: ModelInfo) -> bytes | None:
        """The live model's loss curve, drawn once per model (matplotlib takes a good part of a second)."""
        async with self._chart_lock:  # two /model info at once draw it once
            if self._chart is None or self._chart[0] != live.bundle_hash:
                png = await asyncio.to_thread(_plot, live.bundle, live.path.name)
                self.charts_drawn += 1
                self._chart = (live.bundle_hash, png)
            return self._chart[1]

    # ---- shutdown

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
