"""When the bot runs as several processes, /train and /corpus are answered by the one that trains.

Training, the model files and the added corpora belong to one process (LYRICS_TRAINER=1). Discord sends an
interaction to the shard of the guild it comes from, so a /train or /corpus interaction (a command, or the
autocomplete of one) may reach any process. One that is not the trainer hands it over through the shared
database, untouched, and the trainer runs it as if its own gateway had delivered it: the same checks (owners
only, on our side), the same code, the same answers. Discord takes an interaction's answers from whoever
holds its token, over HTTP, so it does not matter which process gives them.

    sender = RelaySender(bot, store.coordinator, key);  sender.install()     # in a process that is not the trainer
    receiver = RelayReceiver(bot, store.coordinator, key);  receiver.start() # in the trainer, when others run shards

Discord wants the first answer within 3 s. The trainer takes a handed-over interaction within milliseconds
(PostgreSQL NOTIFY; SQLite is polled every 0.1 s). If it has not taken it after TAKE_BACK_AFTER_S, the
process that received it takes it back and says the trainer is not answering; the database decides which of
the two gets it (`Coordinator.relay_withdraw` / `Coordinator.relay_take`), so it is answered exactly once.

discord.py keeps no interaction's raw payload and has no public hook before its command tree runs, so this
wraps the INTERACTION_CREATE parser of the client's connection state (`client._connection.parsers`): the one
place where the bot reaches into discord.py's internals (tests/bot/test_shards.py would fail if it moved).

The trust boundary: whoever can write to the database must not be able to pose as Discord. So
  * each handed-over payload is sealed with an HMAC-SHA256 whose key is derived from the bot token
    (`relay_key`), which the database never holds; the trainer drops, with a warning, a row whose seal does
    not match or whose application_id is not this bot's;
  * the trainer acknowledges (defers) a handed-over command before it runs any of it, for an owner (others
    are refused by the command's own check, which has no side effect): that Discord call fails for an
    interaction Discord never sent, and then nothing runs;
  * what a payload carries is checked as if a stranger wrote it: /corpus add downloads only from Discord's
    attachment hosts, never more than its cap (bot/exts/corpus/download.py).
A late sender learns what became of its interaction (`RelayFate`): one the trainer found too old is answered
by the sender after all (errors.trainer_late), so no command goes unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from bot import i18n
from bot.permissions import is_owner
from bot.replies import tell
from bot.store import Coordinator, RelayFate

log = logging.getLogger(__name__)

RELAYED_COMMANDS = frozenset({"train", "corpus"})  # what only the trainer can do: its files, its child process
TAKE_BACK_AFTER_S = 1.5  # of Discord's 3 s: then the receiving process answers itself, in time
MAX_AGE_S = 2.5  # one older than this is not run but marked expired: its sender, late, answers it (or crashed)
WAIT_S = 1.0  # the trainer looks at least this often, even if a NOTIFY was missed
_COMMAND, _AUTOCOMPLETE = 2, 4  # interaction types
# Handed-over commands whose answer everyone in the channel sees (the progress of a run, a cancellation):
# deferred publicly. Every other one is deferred ephemerally, as its answer is.
PUBLIC_ANSWERS = frozenset({"train start", "train cancel"})
# What a trainer that lost its claim still answers: it reads, and stops its own run; nothing else.
WITHOUT_CLAIM = frozenset({"train status", "train cancel", "corpus list"})
_KEY_LABEL = b"lyrics-bot relay v1"  # HMAC(token, label): a key for seals, not the token itself
_ACK_KEEP_S = 60.0  # how long a handed-over interaction waits for its command tree (it is there in ms)

Parser = Callable[[dict[str, Any]], None]


def relay_key(token: str) -> bytes:
    """The key that seals handed-over payloads: derived from the bot token, which the database never holds."""
    return hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def seal(payload: dict[str, Any], key: bytes) -> str:
    """`payload` as the row the trainer takes: its JSON with an HMAC-SHA256 of that JSON."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return json.dumps({"mac": hmac.new(key, body.encode(), hashlib.sha256).hexdigest(), "payload": body})


def unseal(raw: str, key: bytes) -> dict[str, Any] | None:
    """The payload of a sealed row, or None if its seal does not match (or it is no sealed row at all)."""
    try:
        row = json.loads(raw)
        body, mac = row["payload"], row["mac"]
        expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
            return None
        payload = json.loads(body)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return payload if isinstance(payload, dict) else None


def is_relayed(payload: dict[str, Any]) -> bool:
    """Whether an INTERACTION_CREATE payload is for the trainer: a /train or /corpus command or autocomplete."""
    data = payload.get("data") or {}
    return payload.get("type") in (_COMMAND, _AUTOCOMPLETE) and data.get("name") in RELAYED_COMMANDS


class RelaySender:
    """In a process that is not the trainer: hands the trainer's interactions over instead of running them."""

    def __init__(self, client: discord.Client, coordinator: Coordinator, key: bytes) -> None:
        self.client = client
        self.coordinator = coordinator
        self.key = key
        self.handed_over = 0
        self.taken_back = 0
        self.expired = 0
        self.take_back_after_s = TAKE_BACK_AFTER_S
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
            ticket = await self.coordinator.relay_post(seal(payload, self.key))
            self.handed_over += 1
            await asyncio.sleep(self.take_back_after_s)
            fate = await self.coordinator.relay_withdraw(ticket)
        except Exception:  # the database failed (or is closing): the member still gets an answer
            log.exception("could not hand /%s to the trainer process", name)
            await self._answer_here(payload, "errors.internal")
            return
        if fate is RelayFate.TAKEN:
            return  # the trainer took it and answers it
        if fate is RelayFate.EXPIRED:
            self.expired += 1
            log.warning("the trainer process found /%s too old to run (taken back late); said so here", name)
            await self._answer_here(payload, "errors.trainer_late")
            return
        self.taken_back += 1
        log.warning("the trainer process did not take /%s in time; answered here", name)
        await self._answer_here(payload, "errors.trainer_away")

    async def _answer_here(self, payload: dict[str, Any], key: str) -> None:
        """Answer with the text `key` here, in the member's language (an autocomplete gets no choices)."""
        interaction: discord.Interaction = discord.Interaction(data=payload, state=self.client._connection)
        try:
            if payload["type"] == _AUTOCOMPLETE:
                await interaction.response.autocomplete([])
            else:
                await tell(interaction, i18n.text(interaction.locale, key))
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

    def __init__(self, client: discord.Client, coordinator: Coordinator, key: bytes) -> None:
        self.client = client
        self.coordinator = coordinator
        self.key = key
        self.received = 0
        self.dropped = 0  # rows refused at the trust boundary: a bad seal, another application
        self.max_age_s = MAX_AGE_S
        self._task: asyncio.Task[None] | None = None
        self._unacknowledged: dict[int, float] = {}  # interaction id -> when it was handed to the command tree

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-receiver")

    async def _run(self) -> None:
        parse = self.client._connection.parsers["INTERACTION_CREATE"]
        while True:
            try:
                payloads = await self.coordinator.relay_take(max_age_s=self.max_age_s)
                if not payloads:
                    await self.coordinator.relay_wait(WAIT_S)
            except Exception:  # the database is down for a while: keep looking
                log.exception("could not look for interactions handed over by other processes")
                await asyncio.sleep(WAIT_S)
                continue
            for raw in payloads:
                self._run_here(parse, raw)

    def _run_here(self, parse: Parser, raw: str) -> None:
        try:
            payload = self._admit(raw)
            if payload is None:
                self.dropped += 1
                return
            self.received += 1
            now = time.monotonic()
            self._unacknowledged = {i: t for i, t in self._unacknowledged.items() if now - t < _ACK_KEEP_S}
            self._unacknowledged[int(payload["id"])] = now
            parse(payload)  # as if this process's gateway had delivered it
        except Exception:  # one bad payload must not stop the others
            log.exception("could not run a handed-over interaction")

    def _admit(self, raw: str) -> dict[str, Any] | None:
        """The payload, if it passes the trust boundary (see the module docstring); else None, logged."""
        payload = unseal(raw, self.key)
        if payload is None:
            log.warning(
                "dropped a handed-over interaction whose seal does not match: it was not left by a process with"
                " this bot's token (someone else can write to the database?)"
            )
            return None
        if str(payload.get("application_id")) != str(self.client.application_id):
            log.warning("dropped a handed-over interaction for another application (%r)", payload.get("application_id"))
            return None
        if not is_relayed(payload):  # the table is ours alone; anything else is not run
            log.warning("dropped a handed-over interaction that is not /train or /corpus")
            return None
        return payload

    async def acknowledge(self, interaction: discord.Interaction) -> bool:
        """Before a handed-over command runs (the command tree's interaction_check): defer it, for an owner.

        The defer is the first Discord call made with the interaction's token: one Discord never issued
        fails it, and the command does not run (False). Autocompletes (no side effects) and interactions this
        process's own gateway delivered pass untouched; non-owners go on to the command's own refusal.
        """
        handed_over = self._unacknowledged.pop(interaction.id, None) is not None
        if not handed_over or interaction.type is not discord.InteractionType.application_command:
            return True
        if not await is_owner(interaction):
            return True
        name = interaction.command.qualified_name if interaction.command else ""
        try:
            await interaction.response.defer(ephemeral=name not in PUBLIC_ANSWERS, thinking=True)
        except discord.HTTPException as exc:
            log.warning("a handed-over /%s could not be acknowledged (%s); not run", name, exc)
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
