"""When the bot runs as several processes, /train and /corpus are answered by the one that trains.

Training, the model files and the added corpora belong to one process (LYRICS_TRAINER=1). Discord sends an
interaction to the shard of the guild it comes from, so a /train or /corpus interaction (a command, or the
autocomplete of one) may reach any process. One that is not the trainer hands it over through the shared
database, untouched, and the trainer runs it as if its own gateway had delivered it: the same checks (owners
only, on our side), the same code, the same answers. Discord takes an interaction's answers from whoever
holds its token, over HTTP, so it does not matter which process gives them.

    sender = RelaySender(bot, store);  sender.install()     # in a process that is not the trainer
    receiver = RelayReceiver(bot, store);  receiver.start() # in the trainer, when others run shards too

Discord wants the first answer within 3 s. The trainer takes a handed-over interaction within milliseconds
(PostgreSQL NOTIFY; SQLite is polled every 0.1 s). If it has not taken it after TAKE_BACK_AFTER_S, the
process that received it takes it back and says the trainer is not answering; the database decides which of
the two gets it (`Store.relay_withdraw` / `Store.relay_take`), so it is answered exactly once.

discord.py keeps no interaction's raw payload and has no public hook before its command tree runs, so this
wraps the INTERACTION_CREATE parser of the client's connection state (`client._connection.parsers`): the one
place where the bot reaches into discord.py's internals (tests/bot/test_shards.py would fail if it moved).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import discord

from bot import messages
from bot.replies import tell
from bot.store import Store

log = logging.getLogger(__name__)

RELAYED_COMMANDS = frozenset({"train", "corpus"})  # what only the trainer can do: its files, its child process
TAKE_BACK_AFTER_S = 1.5  # of Discord's 3 s: then the receiving process answers itself, in time
MAX_AGE_S = 2.5  # a handed-over interaction older than this is dropped: its sender crashed, Discord gave up
WAIT_S = 1.0  # the trainer looks at least this often, even if a NOTIFY was missed
_COMMAND, _AUTOCOMPLETE = 2, 4  # interaction types

Parser = Callable[[dict[str, Any]], None]


def is_relayed(payload: dict[str, Any]) -> bool:
    """Whether an INTERACTION_CREATE payload is for the trainer: a /train or /corpus command or autocomplete."""
    data = payload.get("data") or {}
    return payload.get("type") in (_COMMAND, _AUTOCOMPLETE) and data.get("name") in RELAYED_COMMANDS


class RelaySender:
    """In a process that is not the trainer: hands the trainer's interactions over instead of running them."""

    def __init__(self, client: discord.Client, store: Store) -> None:
        self.client = client
        self.store = store
        self.handed_over = 0
        self.taken_back = 0
        self._parse: Parser | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        """Catch INTERACTION_CREATE before discord.py parses it; everything else goes on as before."""
        parsers = self.client._connection.parsers
        self._parse = parsers["INTERACTION_CREATE"]
        parsers["INTERACTION_CREATE"] = self._intercept

    def _intercept(self, payload: dict[str, Any]) -> None:
        if not is_relayed(payload):
            assert self._parse is not None
            self._parse(payload)
            return
        task = asyncio.get_running_loop().create_task(self._hand_over(payload), name="relay-hand-over")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, payload: dict[str, Any]) -> None:
        name = payload["data"]["name"]
        try:
            ticket = await self.store.relay_post(json.dumps(payload))
            self.handed_over += 1
            await asyncio.sleep(TAKE_BACK_AFTER_S)
            if not await self.store.relay_withdraw(ticket):
                return  # the trainer took it and answers it
        except Exception:  # the database failed (or is closing): the member still gets an answer
            log.exception("could not hand /%s to the trainer process", name)
            await self._answer_here(payload, messages.INTERNAL_ERROR)
            return
        self.taken_back += 1
        log.warning("the trainer process did not take /%s in time; answered here", name)
        await self._answer_here(payload, messages.TRAINER_AWAY)

    async def _answer_here(self, payload: dict[str, Any], text: str) -> None:
        """Answer with `text` here (an autocomplete gets no choices)."""
        interaction: discord.Interaction = discord.Interaction(data=payload, state=self.client._connection)
        try:
            if payload["type"] == _AUTOCOMPLETE:
                await interaction.response.autocomplete([])
            else:
                await tell(interaction, text)
        except discord.HTTPException as exc:
            log.warning("could not answer /%s here either: %s", payload["data"]["name"], exc)

    async def close(self) -> None:
        """Stop handing over (on shutdown, before the store closes)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class RelayReceiver:
    """In the trainer, when other processes run shards: takes their handed-over interactions and runs them here."""

    def __init__(self, client: discord.Client, store: Store) -> None:
        self.client = client
        self.store = store
        self.received = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-receiver")

    async def _run(self) -> None:
        parse = self.client._connection.parsers["INTERACTION_CREATE"]
        while True:
            try:
                payloads = await self.store.relay_take(max_age_s=MAX_AGE_S)
                if not payloads:
                    await self.store.relay_wait(WAIT_S)
            except Exception:  # the database is down for a while: keep looking
                log.exception("could not look for interactions handed over by other processes")
                await asyncio.sleep(WAIT_S)
                continue
            for raw in payloads:
                self._run_here(parse, raw)

    def _run_here(self, parse: Parser, raw: str) -> None:
        try:
            payload = json.loads(raw)
            if not is_relayed(payload):  # the table is ours alone; anything else is not run
                log.warning("ignored a handed-over interaction that is not /train or /corpus")
                return
            self.received += 1
            parse(payload)  # as if this process's gateway had delivered it
        except Exception:  # one bad payload must not stop the others
            log.exception("could not run a handed-over interaction")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
