"""The bot itself: a `commands.AutoShardedBot` that owns the engine and the store for its whole life.

    bot = create_bot(settings)      # what `python -m bot` and the tests both use
    async with bot:
        await bot.start(settings.token)

Resources open in `setup_hook` (which discord.py runs after login, before the gateway connects,
so no command can arrive before the model is loaded) and close in `close()`, in the reverse order.

It runs Discord's recommended number of shards, or LYRICS_SHARD_COUNT; with LYRICS_SHARD_IDS, only those,
and other processes (on this machine or others) run the rest, sharing the database (LYRICS_DATABASE_URL)
and the model file. One of them trains (LYRICS_TRAINER=1): the others hand it /train and /corpus
(bot/relay.py) and pick up each model it promotes (bot/watcher.py).

Every command's failure ends in one place, `LyricsTree.on_error` (button failures are routed there too,
see bot/views.py): a failed check, and each domain error the cogs let propagate (a full queue, no model,
shutting down, a failed song, the database), is answered with its text in the member's language
(bot/i18n.py); anything else is logged with its traceback and answered with a short apology. Nothing the
bot sends can ping anyone: AllowedMentions.none() is the client's default for every message, and no call
overrides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import messages, views
from bot.engine import (
    Engine,
    EngineClosedError,
    GenerationFailedError,
    GroupQueueFullError,
    ModelMissingError,
    ModelNotLoadedError,
    QueueFullError,
    load_sampler,
)
from bot.forgetting import Forgetting
from bot.i18n import Translator, text
from bot.permissions import NotOwner, ShuttingDown
from bot.relay import RELAYED_COMMANDS as RELAYED_NAMES
from bot.relay import WITHOUT_CLAIM, RelayReceiver, RelaySender, relay_key
from bot.replies import tell
from bot.settings import Settings
from bot.store import Store, StoreError, TrainerTakenError, open_store
from bot.watcher import BundleWatcher
from model.checkpoint import BundleError
from model.corpus import SAMPLE_NOTE, is_sample
from model.sample import SamplingError

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.exts.lyrics", "bot.exts.training", "bot.exts.corpus", "bot.exts.favourites")
# Shutdown meets one deadline, database closed inside it: `docker stop` (and systemd's default) sends SIGKILL
# 10 s after SIGTERM, and the process still has to exit after the bot has closed.
SHUTDOWN_SECONDS = 8.0
FAREWELL_SECONDS = 1.5  # of which: how long replies that could not finish get to say the bot is restarting
CLOSING_SECONDS = 1.0  # and how long is kept back for closing the database and the gateway connection
# The app is installed to servers only (no user installs, so no group DMs); its commands work in servers
# and in DMs with the bot. The Developer Portal's Installation page must match (User Install off).
INSTALLS = app_commands.AppInstallationType(guild=True, user=False)
CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False)
GIL_SWITCH_S = 0.001  # see create_bot


def use_discord_endpoints(api: str | None, gateway: str | None) -> None:
    """Point discord.py at another Discord (a local stand-in) instead of discord.com. Tests and development only.

    discord.py builds every REST URL (webhooks and interaction callbacks included) from `Route.BASE`,
    and connects its first gateway session to `DiscordWebSocket.DEFAULT_GATEWAY`.
    """
    if api:
        discord.http.Route.BASE = api.rstrip("/")
        log.warning("using Discord REST API at %s (LYRICS_DISCORD_API; for tests only)", api)
    if gateway:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        log.warning("using Discord gateway at %s (LYRICS_DISCORD_GATEWAY; for tests only)", gateway)


class LyricsTree(app_commands.CommandTree["LyricsBot"]):
    """The command tree, with the bot's one error path."""

    async def interaction_check(self, interaction: discord.Interaction[LyricsBot]) -> bool:
        """Before any command: a trainer that lost its claim refuses what would train or change files, and a
        command handed over by another process is acknowledged before it runs (bot/relay.py)."""
        bot = self.client
        command = interaction.command
        name = command.qualified_name if command is not None else ""
        if bot.trainer_lost is not None and name.split(" ")[0] in RELAYED_NAMES and name not in WITHOUT_CLAIM:
            if interaction.type is discord.InteractionType.application_command:
                await tell(interaction, text(interaction.locale, "errors.trainer_lost"))
            return False
        if bot.relay_receiver is not None:
            return await bot.relay_receiver.acknowledge(interaction)
        return True

    async def on_error(self, interaction: discord.Interaction[LyricsBot], error: app_commands.AppCommandError) -> None:
        """Answer a failed command or button: what the member can do about it, in their language."""
        what = f"/{interaction.command.qualified_name}" if interaction.command else describe(interaction)
        # A command's exception arrives as CommandInvokeError, a button's as views.ButtonError: both carry it.
        cause = getattr(error, "original", error)
        reply = self.error_text(interaction, cause, what)
        if reply is None:
            log.error("%s failed", what, exc_info=cause)
            reply = text(interaction.locale, "errors.internal")
        try:
            await tell(interaction, reply)
        except discord.HTTPException:
            log.warning("could not tell the member about the error either")

    def error_text(self, interaction: discord.Interaction[LyricsBot], error: Exception, what: str) -> str | None:
        """The reply to an error the bot expects (a refusal, or a domain error the cogs raise); None for a bug."""
        locale = interaction.locale
        if isinstance(error, NotOwner):
            log.info("refused %s to user %d: not one of the bot's owners", what, interaction.user.id)
            return text(locale, "errors.owner_only")
        if isinstance(error, ShuttingDown | EngineClosedError):
            return text(locale, "errors.shutting_down")
        if isinstance(error, app_commands.CommandOnCooldown):
            return messages.cooldown(locale, what, error.retry_after)
        if isinstance(error, QueueFullError):
            return messages.queue_full(locale, error.waiting, error.wait, guild=isinstance(error, GroupQueueFullError))
        if isinstance(error, ModelNotLoadedError):
            settings = self.client.settings
            train = self.get_command("train") is not None
            return messages.no_model(locale, settings.corpus_path, settings.model_path, train_command=train)
        if isinstance(error, SamplingError):  # the model's own checks (e.g. a seed it cannot encode at all)
            return text(locale, "errors.cannot_write", reason=error)
        if isinstance(error, GenerationFailedError):
            log.warning("%s for user %d failed: %s", what, interaction.user.id, error)
            return text(locale, "errors.generation_failed")
        if isinstance(error, StoreError):  # logged with its traceback: the database needs looking at
            log.error("%s failed in the store", what, exc_info=error)
            return text(locale, "errors.internal")
        return None


def describe(interaction: discord.Interaction) -> str:
    """What the interaction was, for a log line: a button's custom_id, else its type."""
    custom_id = interaction.data.get("custom_id") if interaction.data else None
    return f"button {custom_id!r}" if custom_id else f"interaction {interaction.type.name}"


class LyricsBot(commands.AutoShardedBot):
    """The lyrics bot. Pass `engine` or `store` to use ready-made ones; the bot closes them either way.

    `serve=False` builds the bot only far enough to know its commands (for `python -m bot sync`):
    no store, no model, no guild sync.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        store: Store | None = None,
        serve: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,  # no prefix commands; slash commands only
            intents=discord.Intents.default(),  # no privileged intents: nothing here reads messages
            allowed_mentions=discord.AllowedMentions.none(),  # every message; a seed like "@everyone" pings nobody
            help_command=None,
            tree_cls=LyricsTree,
            allowed_installs=INSTALLS,  # the defaults of every command in the tree
            allowed_contexts=CONTEXTS,
            shard_count=settings.sharding.count,  # None: Discord's recommendation
            shard_ids=list(settings.sharding.ids) if settings.sharding.ids is not None else None,
            **options,
        )
        self.settings = settings
        self.serve = serve
        limits = settings.limits
        self.engine = engine or Engine(
            device=settings.device,
            loader=functools.partial(load_sampler, precision=settings.precision),
            batching=limits.batching,
            max_batch=limits.max_batch,
            max_queue=limits.max_queue,
            group_share=limits.guild_share,
            batch_timeout=limits.batch_timeout_s,
            torch_threads=settings.torch_threads,
        )
        self._store = store
        self.forgetting = Forgetting()  # members forgotten lately, and their songs in progress (bot/forgetting.py)
        self.watcher: BundleWatcher | None = None  # a process that does not train: follows the trainer's model
        self.relay_sender: RelaySender | None = None  # ...and hands it /train and /corpus
        self.relay_receiver: RelayReceiver | None = None  # the trainer, when other processes run shards
        self.trainer_lost: str | None = None  # why this process, the trainer, lost its claim (then: no /train)
        # Extensions push their own clean-ups here (e.g. stopping training child processes); see close().
        self.cleanups = contextlib.AsyncExitStack()
        # What must happen even when the process exits at once (a second SIGTERM): see abort().
        self._aborts: list[Callable[[], None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutdown: asyncio.Task[None] | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the store is not open: setup_hook has not run (or serve=False)")
        return self._store

    @property
    def shutting_down(self) -> bool:
        return self._shutdown is not None

    # ---- start-up

    async def setup_hook(self) -> None:
        await self.tree.set_translator(Translator())  # command localizations, sent with every sync
        if self.serve:
            if self._store is None:
                self._store = await open_store(self.settings.database)
            if is_sample(self.settings.corpus_path):
                log.warning("training (/train start) uses the bundled sample corpus: %s", SAMPLE_NOTE)
            await self.load_model()
        # The persistent buttons belong to the bot, not to a cog (as discord.py's examples/views/dynamic_counter.py
        # does): any message's buttons work, including those sent before a restart, whichever cogs are loaded.
        self.add_dynamic_items(*views.DYNAMIC_ITEMS)
        for name in EXTENSIONS:
            await self.load_extension(name)
        if self.serve:
            await self._join_other_processes()  # with the commands loaded: a handed-over /train finds its cog
        if self.serve and self.settings.guild_ids:
            await self.sync_to_guilds(self.settings.guild_ids)

    async def _join_other_processes(self) -> None:
        """Sharded over several processes: the trainer takes the others' /train and /corpus; the others hand
        them over and follow the trainer's model. A single process (the default) does none of this.

        Raises TrainerTakenError if another process on the database already trains.
        """
        sharding, store = self.settings.sharding, self.store
        coordinator = store.coordinator
        shards = "all shards" if sharding.ids is None else f"shards {', '.join(map(str, sharding.ids))}"
        total = f"of {sharding.count}" if sharding.count else "(Discord's recommended count)"
        role = "trains and promotes models" if sharding.trainer else "follows the trainer process's model"
        log.info("running %s %s; this process %s; database: %s", shards, total, role, store.description)
        key = relay_key(self.http.token or self.settings.token)  # the token this process logged in with
        if sharding.trainer:
            if sharding.partial:
                if not await coordinator.claim_trainer(lease_s=sharding.trainer_lease_s):
                    raise TrainerTakenError(
                        f"another process on {store.description} already trains (LYRICS_TRAINER=1): exactly one"
                        " process may; set LYRICS_TRAINER=0 for this one (on PostgreSQL, a trainer that died frees"
                        f" its claim {sharding.trainer_lease_s:g} s after its last renewal: LYRICS_TRAINER_LEASE)"
                    )
                self.relay_receiver = RelayReceiver(self, coordinator, key)
                self.relay_receiver.start()
                self.add_cleanup(self.relay_receiver.stop)
                watch = asyncio.create_task(self._watch_trainer_claim(self.relay_receiver), name="trainer-claim")
                self.add_cleanup(functools.partial(_cancel, watch))
            return
        if self.settings.database_url is None:
            log.warning(
                "LYRICS_TRAINER=0 on SQLite (%s): the processes must share that file on one machine; on several,"
                " set LYRICS_DATABASE_URL",
                self.settings.db_path,
            )
        self.relay_sender = RelaySender(self, coordinator, key)
        self.relay_sender.install()
        self.add_cleanup(self.relay_sender.close)
        self.watcher = BundleWatcher(self.engine, self.settings.model_path, interval=sharding.model_poll_s)
        self.watcher.start()
        self.add_cleanup(self.watcher.stop)

    async def _watch_trainer_claim(self, receiver: RelayReceiver) -> None:
        """When the claim to train is lost: stop taking handed-over commands, and refuse /train from then on
        (another process may claim it once the lease runs out; two trainers must never run at once)."""
        self.trainer_lost = await self.store.coordinator.wait_trainer_lost()
        await receiver.stop()

    async def load_model(self) -> bool:
        """Load the configured bundle. Without one the bot still runs and /lyrics explains how to train one."""
        path = self.settings.model_path
        try:
            await self.engine.load(path)
        except ModelMissingError:
            log.warning(
                "no model at %s: /lyrics will say how to train one (python -m model train --corpus %s --out %s)",
                path,
                self.settings.corpus_path,
                path,
            )
            return False
        except BundleError as exc:
            log.error(
                "cannot load the model: %s. /lyrics is unavailable until a good bundle is trained or restored at %s",
                exc,
                path,
            )
            return False
        return True

    async def sync_to_guilds(self, guild_ids: tuple[int, ...]) -> None:
        """Copy the commands to each guild and sync there (guild commands update at once; global ones lag)."""
        for guild_id in guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            try:
                synced = await self.tree.sync(guild=guild)
            except discord.Forbidden:
                log.error(
                    "cannot sync commands to guild %d: invite the bot there with the "
                    "applications.commands scope, or remove it from LYRICS_GUILD_IDS",
                    guild_id,
                )
            else:
                log.info("synced %d commands to guild %d", len(synced), guild_id)

    async def on_ready(self) -> None:
        assert self.user is not None
        shards = ", ".join(str(shard) for shard in sorted(self.shards))
        log.info(
            "logged in as %s (id %d) in %d guilds, shards %s of %d",
            self.user,
            self.user.id,
            len(self.guilds),
            shards,
            self.shard_count or 1,
        )

    # ---- work in progress

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Mark a reply in progress, so that a shutdown lets it finish first."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ---- shutting down

    def add_cleanup(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Run `callback` on shutdown, beside the replies finishing and before the store closes. It should
        finish within SHUTDOWN_SECONDS; it is cut short at the deadline."""
        self.cleanups.push_async_callback(callback)

    def add_abort(self, callback: Callable[[], None]) -> None:
        """Run `callback` (synchronous, quick) if the process has to exit at once, e.g. to kill a child process."""
        self._aborts.append(callback)

    def abort(self) -> None:
        """The last thing before an immediate exit: run the abort callbacks, whatever they raise."""
        for callback in self._aborts:
            try:
                callback()
            except Exception:
                log.exception("an abort callback failed")

    async def close(self) -> None:
        """Finish or fail the replies in progress, release everything, then disconnect, all within
        SHUTDOWN_SECONDS. Safe to call twice."""
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self._shut_down(), name="lyrics-bot-shutdown")
        await asyncio.shield(self._shutdown)  # a second caller (or a cancelled one) must not cut it short

    async def _shut_down(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_SECONDS

        def left(keep: float = 0.0) -> float:
            """Seconds until the deadline, less `keep` seconds kept back for the steps after."""
            return max(0.0, deadline - keep - loop.time())

        log.info("shutting down: %d replies in progress, %d songs waiting", self._busy, self.engine.waiting)
        # Songs still waiting in the queue are told at once that the bot is restarting; the batch being
        # written may finish. Clean-ups (a training child) run meanwhile.
        keep = FAREWELL_SECONDS + CLOSING_SECONDS
        closing = [
            asyncio.create_task(self._step("engine", self.engine.close(grace=left(keep))), name="engine"),
            asyncio.create_task(self._step("clean-ups", self.cleanups.aclose()), name="clean-ups"),
        ]
        if not await self._wait_idle(left(keep)):
            log.warning("%d replies still in progress at the shutdown deadline; failing them", self._busy)
        _, pending = await asyncio.wait(closing, timeout=left(keep))
        for task in pending:
            log.warning("%s did not finish before the shutdown deadline", task.get_name())
            task.cancel()
        # Replies waiting on the engine got EngineClosedError; let them say so while HTTP still works.
        await self._wait_idle(left(CLOSING_SECONDS))
        if self._store is not None:
            try:
                await asyncio.wait_for(self._store.close(), max(left(CLOSING_SECONDS / 2), 0.1))
            except Exception:
                log.exception("while closing the store")
        try:
            await asyncio.wait_for(super().close(), max(left(), 0.1))
        except TimeoutError:
            log.warning("the gateway connection did not close in time")
        log.info("shut down cleanly in %.1fs", SHUTDOWN_SECONDS - left())

    @staticmethod
    async def _step(name: str, action: Awaitable[object]) -> None:
        """One concurrent step of the shutdown: its failure is logged, never stops the others."""
        try:
            await action
        except Exception:
            log.exception("while closing the %s", name)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_bot(settings: Settings, **options: Any) -> LyricsBot:
    """The bot as `python -m bot` runs it. `options` go to discord.py (tests shorten guild_ready_timeout)."""
    # The engine's worker thread runs the sampler's Python code between torch calls and shares the GIL
    # with the event loop; with the default 5 ms switch interval the loop waits longer for each turn, and
    # under a burst its heartbeats went out up to 0.3 s late (bench/bench_bot.py: worst gap 0.44-0.56 s
    # against 0.26-0.34 s at 1 ms, for the same songs per second).
    sys.setswitchinterval(GIL_SWITCH_S)
    return LyricsBot(settings, **options)
