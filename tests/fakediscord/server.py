"""A local stand-in for Discord's REST API and gateway, so tests drive the real discord.py client over loopback.

`FakeDiscord` runs one aiohttp server on 127.0.0.1: REST under ``/api/v10`` and the gateway websocket under
``/gateway/``. It plays Discord's side of login, READY/GUILD_CREATE, heartbeats, command sync, interactions and
messages, enforces the rules a real bot trips over (3 s to acknowledge, one acknowledgement, size limits...) and
records everything so a test can assert on it: `requests`, `violations`, `unknown_routes`, `heartbeats`,
`allowed_mentions`, `messages`, `commands`, and one `Interaction` per dispatched interaction.

It serves sharded bots too, in one process or several: ``GET /gateway/bot`` recommends `shards` shards, each
gateway session IDENTIFYs as ``shard: [id, count]`` and is sent the guilds of its shard, and every event about
a guild goes to the session of shard ``(guild_id >> 22) % count`` (events without a guild, DMs, to shard 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import re
import secrets
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yarl
from aiohttp import WSMsgType, web

from . import payloads as p
from .rules import (
    form_errors,
    validate_choices,
    validate_command,
    validate_message,
    validate_modal,
    walk_components,
)

API = "/api/v10"
GATEWAY_PATH = "/gateway/"
ACK_DEADLINE_S = 3.0
ATTACHMENT_CHUNK = 64 * 1024  # what the "CDN" sends at a time
_JSON = web.RequestKey("json", Any)  # the parsed body (payload_json of a multipart one)
_FILES = web.RequestKey("files", dict)  # multipart files by field name, e.g. 'files[0]'


@dataclass
class Attachment:
    """A file with its bytes: one the bot uploaded, or one a member attaches to a command (`FakeDiscord.upload`).

    Either is served at its `url` on the fake's loopback port, as Discord's CDN serves attachments.
    `declared_size` is the size Discord reports, when a test wants it to differ from the bytes served.
    """

    id: str
    filename: str
    data: bytes
    content_type: str
    declared_size: int | None = None

    def to_api(self, base: str) -> dict[str, Any]:
        url = f"{base}/attachments/{self.id}/{urllib.parse.quote(self.filename, safe='')}"
        return {
            "id": self.id,
            "filename": self.filename,
            "size": len(self.data) if self.declared_size is None else self.declared_size,
            "url": url,
            "proxy_url": url,
            "content_type": self.content_type,
        }


@dataclass
class HttpRequest:
    """One request the bot made: method, path (with the /api/v10 prefix stripped), query, JSON body, files."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: dict[str, Attachment]


@dataclass
class Fault:
    """What the fake does to the bot's requests matching `method` and `path` (a regex on the path after
    /api/v10): hold them until `release` is set, then (if `status`) answer with that error, `times` times."""

    method: str
    path: re.Pattern[str]
    status: int | None = None
    code: int = 0
    message: str = ""
    times: int | None = 1  # None: every matching request
    release: asyncio.Event | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and (self.times is None or self.hits < self.times) and bool(self.path.search(path))


@dataclass
class Violation:
    """A Discord rule the bot broke; tests assert `fake.violations == []`."""

    rule: str
    detail: str
    route: str = ""

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail} ({self.route})"


class SentMessage:
    """A message the bot created (channel message, interaction response or followup) in its current state."""

    def __init__(
        self,
        fake: FakeDiscord,
        *,
        channel_id: str,
        guild_id: str | None,
        body: dict[str, Any],
        attachments: list[Attachment],
        message_type: int = 0,
        webhook: bool = False,
        interaction: Interaction | None = None,
    ) -> None:
        self.fake = fake
        self.id = p.snowflake()
        self.channel_id, self.guild_id = channel_id, guild_id
        self.message_type, self.webhook, self.interaction = message_type, webhook, interaction
        self.timestamp, self.edited_timestamp = p.now_iso(), None
        self.content: str = ""
        self.embeds: list[dict[str, Any]] = []
        self.components: list[dict[str, Any]] = []
        self.attachments: list[Attachment] = []
        self.allowed_mentions: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []  # every body sent for this message, creation first
        self.deleted = False
        self.flags: int = body.get("flags") or 0
        self.apply(body, attachments)
        self.edited_timestamp = None

    def apply(self, body: dict[str, Any], attachments: list[Attachment] | None) -> None:
        """Patch the message with a create/edit body: only fields present change, as on Discord."""
        self.history.append(body)
        for key in ("content", "embeds", "components", "allowed_mentions"):
            if key in body:
                setattr(self, key, body[key] if body[key] is not None else ("" if key == "content" else []))
        if body.get("flags") is not None:  # ephemerality is fixed at creation; edits change only other flags
            self.flags = (self.flags & p.EPHEMERAL) | (body["flags"] & ~p.EPHEMERAL)
        if attachments is not None:
            self.attachments = attachments
        self.edited_timestamp = p.now_iso()

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & p.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is the "thinking..." placeholder of a deferred interaction."""
        return bool(self.flags & p.LOADING)

    def custom_ids(self) -> list[str]:
        """All component custom_ids on the message, in order."""
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def to_api(self) -> dict[str, Any]:
        body = {"content": self.content, "embeds": self.embeds, "components": self.components, "flags": self.flags}
        return p.make_message(
            id=self.id,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            author=self.fake.bot_user,
            body=body,
            attachments=[a.to_api(self.fake.base_url) for a in self.attachments],
            message_type=self.message_type,
            webhook_id=self.fake.application_id if self.webhook else None,
            timestamp=self.timestamp,
            edited_timestamp=self.edited_timestamp,
        )

    def __repr__(self) -> str:
        return f"<SentMessage id={self.id} flags={self.flags} content={self.content[:40]!r}>"


class Interaction:
    """What happened to one interaction the test dispatched: its callbacks, followups, edits and messages."""

    def __init__(self, fake: FakeDiscord, payload: dict[str, Any], source: SentMessage | None = None) -> None:
        self.fake, self.payload, self.source = fake, payload, source
        self.id: str = payload["id"]
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.dispatched_at = 0.0
        self.callbacks: list[dict[str, Any]] = []  # {'type', 'data', 'elapsed'} per callback the bot sent
        self.original: SentMessage | None = None  # what /messages/@original points at
        self.followups: list[SentMessage] = []
        self.edits: list[dict[str, Any]] = []  # bodies of PATCHes to this interaction's messages
        self.modal: dict[str, Any] | None = None
        self.message: SentMessage | None = None  # the message this interaction last created or changed
        self.expired = False
        self.shard: int | None = None  # the shard whose session it was delivered to

    @property
    def response_type(self) -> int | None:
        """Type of the initial callback (4 message, 5 deferred, 6 deferred update, 7 update, 9 modal)."""
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks) and not self.expired

    @property
    def content(self) -> str | None:
        return self.message.content if self.message else None

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.message.embeds if self.message else []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.message.components if self.message else []

    @property
    def attachments(self) -> list[Attachment]:
        return self.message.attachments if self.message else []

    @property
    def flags(self) -> int:
        return self.message.flags if self.message else 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.message and self.message.ephemeral)

    def _settled(self) -> bool:
        return self.modal is not None or (self.message is not None and not self.message.loading)

    async def wait_response(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the initial callback and return it as ``{'type', 'data', 'elapsed'}``."""
        await self.fake.wait_until(lambda: self.callbacks, timeout, f"no response to interaction {self.describe()}")
        return self.callbacks[0]

    async def wait_final(
        self, timeout: float = 10.0, until: Callable[[Interaction], Any] | None = None
    ) -> SentMessage | None:
        """Wait until the interaction shows a real result and return that message (None for a modal).

        A deferral only settles once an edit of @original or a followup fills it in; ``until`` waits for more
        (e.g. ``lambda i: i.edits`` for a reply that is edited later).
        """
        await self.fake.wait_until(
            lambda: self._settled() and (until is None or until(self)),
            timeout,
            f"interaction {self.describe()} did not settle",
        )
        return self.message

    def describe(self) -> str:
        data = self.payload.get("data", {})
        return f"{self.id} ({data.get('name') or data.get('custom_id')!r}, callbacks={self.callbacks})"

    def __repr__(self) -> str:
        return f"<Interaction {self.describe()}>"


class FakeDiscord:
    """Discord's REST API and gateway on a loopback port, with recording and rule checks.

    ``guilds`` are GUILD_CREATE payloads (see `payloads.make_guild`); by default one guild with a
    ``#general`` channel and two members, ``owner`` (the application owner) and ``user`` (who runs commands).
    """

    def __init__(
        self,
        guilds: list[dict[str, Any]] | None = None,
        *,
        heartbeat_interval_ms: int = 41250,
        token: str = "fake-bot-token",
        ack_deadline: float = ACK_DEADLINE_S,
        shards: int = 1,
    ) -> None:
        self.token, self.heartbeat_interval_ms, self.ack_deadline = token, heartbeat_interval_ms, ack_deadline
        self.recommended_shards = shards  # what GET /gateway/bot tells a bot that lets Discord choose
        self.bot_user = p.make_user("Lyrics Bot", bot=True)
        self.application_id: str = self.bot_user["id"]  # bots' application id equals their user id
        self.owner = p.make_user("owner")
        self.user = p.make_user("alice")
        # The application's owner as GET /oauth2/applications/@me reports it: `owner`, or a team (payloads.make_team).
        self.team: dict[str, Any] | None = None
        self.guilds = (
            guilds if guilds is not None else [p.make_guild(members=[self.owner, self.user], owner=self.owner)]
        )
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # None: global; guild id: that guild's
        self.requests: list[HttpRequest] = []
        self.unknown_routes: list[str] = []
        self.violations: list[Violation] = []
        self.allowed_mentions: list[dict[str, Any] | None] = []  # per message body the bot sent
        self.messages: list[SentMessage] = []
        self.interactions: dict[str, Interaction] = {}
        self.identifies: list[dict[str, Any]] = []
        self.gateway_sent: list[dict[str, Any]] = []  # every gateway payload the fake sent
        self.heartbeats: list[float] = []  # time.monotonic() at each op 1 arrival
        self.faults: list[Fault] = []  # see fail() and hold()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sockets: list[_GatewaySession] = []
        self._sessions: dict[str, tuple[int, tuple[int, int]]] = {}  # session_id -> (last sequence, shard), for RESUME
        self._changed: asyncio.Condition | None = None
        self._ready = asyncio.Event()
        self._dm_channels: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, Attachment] = {}  # files members attached to commands, by id
        self.downloads: list[str] = []  # attachment ids the bot fetched from the fake's "CDN"
        self.served: dict[str, int] = {}  # attachment id -> bytes the "CDN" sent of it, the last time

    # ---- lifecycle ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_base(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return self.base_url + API

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{GATEWAY_PATH}"

    @property
    def guild(self) -> dict[str, Any]:
        return self.guilds[0]

    @property
    def channel(self) -> dict[str, Any]:
        return self.guilds[0]["channels"][0]

    async def start(self) -> FakeDiscord:
        """Start serving on a free loopback port."""
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get(GATEWAY_PATH, self._gateway)
        r.add_get(API + "/gateway/bot", self._gateway_bot)
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._application)
        for path in ("/applications/{app}/commands", "/applications/{app}/guilds/{guild}/commands"):
            r.add_put(API + path, self._put_commands)
            r.add_get(API + path, self._get_commands)
        r.add_post(API + "/interactions/{id}/{token}/callback", self._callback)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_route("*", API + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_message)
        r.add_post(API + "/channels/{cid}/messages", self._channel_post)
        r.add_get(API + "/channels/{cid}/messages", self._channel_history)
        r.add_route("*", API + "/channels/{cid}/messages/{mid}", self._channel_message)
        r.add_post(API + "/channels/{cid}/typing", _no_content)
        r.add_post(API + "/users/@me/channels", self._open_dm)
        r.add_get("/attachments/{id}/{filename:.*}", self._attachment)
        r.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """Close gateway connections (1001 going away) and stop serving."""
        await self.drop_connections(1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway socket with ``code`` (4000: "unknown error", which clients answer by resuming)."""
        for s in list(self._sockets):
            await s.ws.close(code=code)

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[FakeDiscord]:
        """Point discord.py's REST base and default gateway at this server; restore them on exit."""
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        old = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self.rest_base, yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old

    async def wait_ready(self, timeout: float = 10.0, *, shards: Iterable[int] | None = None) -> None:
        """Wait until a client has identified (or resumed) and been sent READY and its guilds; with `shards`,
        until a session of each of those shards has."""
        if shards is None:
            await asyncio.wait_for(self._ready.wait(), timeout)
        else:
            wanted = set(shards)
            await self.wait_until(lambda: wanted <= self.ready_shards(), timeout, f"shards {sorted(wanted)} ready")

    def ready_shards(self) -> set[int]:
        """The shard ids that have a session ready now."""
        return {session.shard[0] for session in self._sockets if session.ready}

    def shard_of(self, guild_id: str | int, count: int) -> int:
        """The shard that receives a guild's events when the bot runs `count` shards, as Discord computes it."""
        return (int(guild_id) >> 22) % count

    def _session_for(self, guild_id: str | int | None, shard: int | None) -> _GatewaySession:
        """The ready session that receives an event about `guild_id` (None: a DM, shard 0), or for `shard`."""
        live = [s for s in self._sockets if s.ready]
        if shard is not None:
            chosen = [s for s in live if s.shard[0] == shard]
        elif guild_id is None:
            chosen = [s for s in live if s.shard[0] == 0]
        else:
            chosen = [s for s in live if self.shard_of(guild_id, s.shard[1]) == s.shard[0]]
        if not chosen:
            where = f"shard {shard}" if shard is not None else f"guild {guild_id}" if guild_id else "DMs"
            raise RuntimeError(f"no identified gateway connection for {where}")
        return chosen[-1]  # the newest, if a reconnecting client has two for a moment

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` is truthy; re-checked whenever the fake records something."""
        assert self._changed is not None, "FakeDiscord not started"
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{what} within {timeout}s; violations={self.violations}, unknown routes={self.unknown_routes}"
            ) from None

    def max_heartbeat_gap(self) -> float:
        """The longest time between two consecutive heartbeats (0 with fewer than two)."""
        return max((b - a for a, b in itertools.pairwise(self.heartbeats)), default=0.0)

    @property
    def global_commands(self) -> list[dict[str, Any]]:
        return self.commands.get(None, [])

    def find_command(self, name: str, guild_id: str | int | None = None) -> tuple[dict[str, Any] | None, bool]:
        """The synced chat-input command called ``name`` (guild first, then global) and whether it is guild-scoped."""
        for scope in ([int(guild_id)] if guild_id else []) + [None]:
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd, scope is not None
        return None, False

    # ---- faults: Discord failing or slow ---------------------------------------------------------------------

    def fail(
        self, method: str, path: str, *, status: int, code: int = 0, message: str = "", times: int | None = 1
    ) -> Fault:
        """Answer the next `times` requests `method path` (a regex, e.g. r"/messages/@original$") with an error,
        as Discord does when it is down (503), or a message was deleted (404, code 10008)."""
        fault = Fault(method, re.compile(path), status, code, message or f"{status}: injected", times)
        self.faults.append(fault)
        return fault

    def hold(self, method: str, path: str, *, times: int | None = None) -> asyncio.Event:
        """Keep matching requests waiting (Discord being slow) until the returned event is set."""
        release = asyncio.Event()
        self.faults.append(Fault(method, re.compile(path), times=times, release=release))
        return release

    async def _apply_faults(self, method: str, path: str) -> web.Response | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.hits += 1
                if fault.release is not None:
                    await fault.release.wait()
                if fault.status is not None:
                    return _error(fault.status, fault.code, fault.message)
        return None

    # ---- driving the bot ------------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any], *, shard: int | None = None) -> int:
        """Send a DISPATCH (op 0) event to the session of the shard its guild is on (or to `shard`'s); returns
        the shard it went to."""
        session = self._session_for(data.get("guild_id"), shard)
        await session.dispatch(event, data)
        return session.shard[0]

    def upload(
        self, filename: str, data: bytes, *, content_type: str | None = None, declared_size: int | None = None
    ) -> Attachment:
        """A file a member attaches: pass it as an attachment option's value to `send_slash_command`.

        It is sent in the interaction's ``resolved`` data as Discord sends it, and served at its URL.
        """
        attachment = Attachment(
            p.snowflake(), filename, data, content_type or _sniff(filename, data, None), declared_size
        )
        self.uploads[attachment.id] = attachment
        return attachment

    async def send_slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: dict[str, Any] | None = None,
        guild_id: str | int | None = None,
        channel_id: str | int | None = None,
        permissions: Any = None,
        subcommand: str | None = None,
        dm: bool = False,
        shard: int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Dispatch INTERACTION_CREATE type 2 for ``/name [subcommand...]`` with ``options`` (name -> value).

        ``name`` may hold the whole path ("lyrics write"); option types come from the synced schema when there is
        one, else from the Python type (an `Attachment` from `upload` is an attachment option). ``dm=True`` sends
        it from a DM (``user``, no guild). ``shard`` delivers it to that shard's session whatever the guild.
        ``locale`` is the member's Discord language (Discord sends the command's default name whatever it is).
        """
        guild = None if dm else self._guild(guild_id)
        data = self._command_data(name, options, subcommand, guild)
        return await self._interact(2, data, user, guild, channel_id, permissions, shard=shard, locale=locale)

    async def send_autocomplete(
        self,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        user: dict[str, Any] | None = None,
        permissions: Any = None,
        dm: bool = False,
        guild_id: str | int | None = None,
        shard: int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Dispatch INTERACTION_CREATE type 4: ``user`` is typing option ``focused`` of ``/name``.

        The bot answers with callback type 8; its choices are in ``wait_response()["data"]["choices"]``.
        """
        guild = None if dm else self._guild(guild_id)
        data = self._command_data(name, options, None, guild)
        leaf = data
        while leaf.get("options") and leaf["options"][0]["type"] in (1, 2):
            leaf = leaf["options"][0]
        [option] = [o for o in leaf.get("options", []) if o["name"] == focused]
        option["focused"] = True
        return await self._interact(4, data, user, guild, None, permissions, shard=shard, locale=locale)

    def _command_data(
        self, name: str, options: dict[str, Any] | None, subcommand: str | None, guild: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The ``data`` of a command interaction: options typed from the synced schema, attachments resolved."""
        path = name.split() + (subcommand.split() if subcommand else [])
        schema, guild_scoped = self.find_command(path[0], guild and guild["id"])
        node = schema
        for sub in path[1:]:  # descend the schema along subcommand groups / subcommands
            node = next((o for o in (node or {}).get("options", []) if o["name"] == sub), None) if node else None
        if schema is not None and node is None:
            raise ValueError(f"/{' '.join(path)} is not in the synced command {schema['name']!r}")
        known = {o["name"]: o for o in (node or {}).get("options", []) if o.get("type") not in (1, 2)}
        opts = []
        resolved: dict[str, Any] = {}
        for key, value in (options or {}).items():
            if node is not None and key not in known:
                raise ValueError(f"/{' '.join(path)} has no option {key!r}; it has {sorted(known)}")
            kind = known[key]["type"] if key in known else _option_type(value)
            if isinstance(value, Attachment):  # Discord sends the id, and the attachment in `resolved`
                resolved.setdefault("attachments", {})[value.id] = value.to_api(self.base_url)
                value = value.id
            opts.append({"name": key, "type": kind, "value": value})
        for depth in range(len(path) - 1, 0, -1):  # wrap leaf options in subcommand (1) / group (2) options
            opts = [{"name": path[depth], "type": 1 if depth == len(path) - 1 else 2, "options": opts}]
        data: dict[str, Any] = {
            "id": schema["id"] if schema else p.snowflake(),
            "name": path[0],
            "type": 1,
            "options": opts,
        }
        if resolved:
            data["resolved"] = resolved
        if guild_scoped and guild is not None:
            data["guild_id"] = guild["id"]  # discord.py looks guild commands up by this
        return data

    async def click_button(
        self,
        message: SentMessage | Interaction,
        custom_id: str,
        *,
        user: dict[str, Any] | None = None,
        permissions: Any = None,
        shard: int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        """Dispatch INTERACTION_CREATE type 3: ``user`` clicks the button ``custom_id`` on ``message``.

        ``shard`` delivers the click to that shard's session instead of the one its guild is on: how a test makes
        two shard processes receive clicks on the same song (as they may while a bot reshards).
        """
        if isinstance(message, Interaction):
            message = message.message
        if message is None or custom_id not in message.custom_ids():
            raise ValueError(f"no component {custom_id!r} on {message!r}")
        guild = self._guild(message.guild_id) if message.guild_id else None
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(
            3, data, user, guild, message.channel_id, permissions, source=message, shard=shard, locale=locale
        )

    async def _interact(
        self,
        type: int,
        data: dict[str, Any],
        user: dict[str, Any] | None,
        guild: dict[str, Any] | None,
        channel_id: Any,
        permissions: Any,
        source: SentMessage | None = None,
        shard: int | None = None,
        locale: str = "en-US",
    ) -> Interaction:
        user = user or self.user
        if guild is None:
            channel = self._dm_channel(user)
        else:
            channel = (
                next((c for c in guild["channels"] if c["id"] == str(channel_id)), None)
                if channel_id
                else guild["channels"][0]
            )
            if channel is None:
                raise ValueError(f"no channel {channel_id} in guild {guild['id']}")
        perms = getattr(permissions, "value", permissions)
        member = next((m for m in guild["members"] if m["user"]["id"] == user["id"]), None) if guild else None
        payload = p.make_interaction(
            type=type,
            application_id=self.application_id,
            data=data,
            user=user,
            channel=channel,
            guild=guild,
            permissions=p.DEFAULT_MEMBER_PERMISSIONS if perms is None else int(perms),
            message=source.to_api() if source else None,
            roles=member["roles"] if member else (),
            locale=locale,
        )
        inter = Interaction(self, payload, source)
        self.interactions[inter.id] = inter
        inter.dispatched_at = time.monotonic()  # Discord's 3 s starts when it sends the event
        inter.shard = await self.dispatch("INTERACTION_CREATE", payload, shard=shard)
        return inter

    # ---- roles and channels -----------------------------------------------------------------------------

    async def add_role(self, name: str, *, permissions: int = 0, guild_id: Any = None) -> dict[str, Any]:
        """A new role in a guild (told to a connected bot with GUILD_ROLE_CREATE)."""
        guild = self._guild(guild_id)
        role = p.make_role(guild["id"], name, permissions=permissions, position=len(guild["roles"]))
        guild["roles"].append(role)
        if self._guild_connected(guild["id"]):
            await self.dispatch("GUILD_ROLE_CREATE", {"guild_id": guild["id"], "role": role})
        return role

    def give_role(self, user: dict[str, Any], role: dict[str, Any], *, guild_id: Any = None) -> None:
        """Make `user` a member of the guild (if not yet) with `role`. Interactions from them carry it; the bot,
        without the privileged members intent, learns members' roles from those interactions only."""
        guild = self._guild(guild_id)
        member = next((m for m in guild["members"] if m["user"]["id"] == user["id"]), None)
        if member is None:
            member = p.make_member(user)
            guild["members"].append(member)
        member["roles"].append(role["id"])

    async def add_channel(
        self, name: str, *, overwrites: list[dict[str, Any]] | None = None, guild_id: Any = None
    ) -> dict[str, Any]:
        """A new text channel (told to a connected bot with CHANNEL_CREATE), e.g. a private one:
        ``overwrites=[p.overwrite(guild_id, p.ROLE_OVERWRITE, deny=p.VIEW_CHANNEL), ...]``."""
        guild = self._guild(guild_id)
        channel = p.make_text_channel(guild["id"], name, position=len(guild["channels"]), overwrites=overwrites or [])
        guild["channels"].append(channel)
        if self._guild_connected(guild["id"]):
            await self.dispatch("CHANNEL_CREATE", channel)
        return channel

    def _guild_connected(self, guild_id: str) -> bool:
        return any(s.ready and self.shard_of(guild_id, s.shard[1]) == s.shard[0] for s in self._sockets)

    def _bot_can_view(self, channel: dict[str, Any]) -> bool:
        """Whether the bot may see a channel (DMs: always). Discord answers 403 Missing Access otherwise."""
        guild_id = channel.get("guild_id")
        if guild_id is None:
            return True
        guild = self._guild(guild_id)
        return bool(p.channel_permissions(guild, channel, self.bot_user["id"]) & p.VIEW_CHANNEL)

    def _guild(self, guild_id: Any) -> dict[str, Any]:
        if guild_id is None:
            return self.guild
        for g in self.guilds:
            if g["id"] == str(guild_id):
                return g
        raise ValueError(f"no guild {guild_id}")

    def _dm_channel(self, user: dict[str, Any]) -> dict[str, Any]:
        for ch in self._dm_channels.values():
            if ch["recipients"][0]["id"] == user["id"]:
                return ch
        ch = {"id": p.snowflake(), "type": 1, "recipients": [user], "last_message_id": None, "flags": 0}
        self._dm_channels[ch["id"]] = ch
        return ch

    # ---- recording helpers ----------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _violate(self, request: web.Request, rule: str, detail: str) -> None:
        self.violations.append(Violation(rule, detail, f"{request.method} {request.path}"))

    def _invalid(self, request: web.Request, problems: list, wrap: str | None = None) -> web.Response:
        problems = [((wrap, *path) if wrap else path, code, message) for path, code, message in problems]
        for path, code, message in problems:
            self._violate(request, "invalid-form-body", f"{'.'.join(map(str, path))}: {code} {message}")
        return _error(400, 50035, "Invalid Form Body", form_errors(problems))

    def _new_message(
        self, body: dict[str, Any], files: dict[str, Attachment], *, channel_id: str, guild_id: str | None, **kw: Any
    ) -> SentMessage:
        msg = SentMessage(
            self,
            channel_id=channel_id,
            guild_id=guild_id,
            body=body,
            attachments=self._attachments(body, files, []) or [],
            **kw,
        )
        self.messages.append(msg)
        return msg

    def _attachments(
        self, body: dict[str, Any], files: dict[str, Attachment], existing: list[Attachment]
    ) -> list[Attachment] | None:
        """Resolve ``attachments`` (kept ids or indexes into files[n]); None means "unchanged"."""
        if "attachments" not in body and not files:
            return None
        kept = {a.id: a for a in existing}
        result, used = [], set()
        for entry in body.get("attachments") or []:
            key = str(entry.get("id"))
            if key in kept:
                result.append(kept[key])
            elif f"files[{key}]" in files:
                used.add(f"files[{key}]")
                f = files[f"files[{key}]"]
                result.append(Attachment(p.snowflake(), entry.get("filename") or f.filename, f.data, f.content_type))
        result += [
            Attachment(p.snowflake(), f.filename, f.data, f.content_type)
            for name, f in files.items()
            if name not in used
        ]
        return result

    # ---- HTTP plumbing --------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.startswith(GATEWAY_PATH):
            return await handler(request)
        body, files = None, {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                else:
                    data = await part.read()
                    files[part.name] = Attachment(
                        "",
                        part.filename or part.name,
                        bytes(data),
                        _sniff(part.filename, bytes(data), part.headers.get("Content-Type")),
                    )
        elif request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        request[_JSON], request[_FILES] = body if body is not None else {}, files
        path = request.path[len(API) :] if request.path.startswith(API) else request.path
        self.requests.append(HttpRequest(request.method, path, dict(request.query), body, files))
        # Webhook and interaction-callback routes authenticate by the token in the URL, everything else by header.
        if (
            path.startswith(("/users", "/oauth2", "/applications", "/channels"))
            and request.headers.get("Authorization") != f"Bot {self.token}"
        ):
            return _error(401, 0, "401: Unauthorized")
        try:
            if (injected := await self._apply_faults(request.method, path)) is not None:
                return injected
            return await handler(request)
        finally:
            await self._notify()

    async def _unknown(self, request: web.Request) -> web.Response:
        self.unknown_routes.append(f"{request.method} {request.path}")
        return _error(404, 0, "404: Not Found")

    async def _me(self, request: web.Request) -> web.Response:
        return _ok(self.bot_user)

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        """Where to connect, how many shards Discord recommends, and how many sessions may still start."""
        return _ok(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000 - len(self.identifies),
                    "reset_after": 24 * 3600 * 1000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _application(self, request: web.Request) -> web.Response:
        return _ok(
            {
                "id": self.application_id,
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "owner": p.team_user(self.team) if self.team else self.owner,
                "team": self.team,
                "flags": 0,
                "bot": self.bot_user,
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(self.guilds),
            }
        )

    # ---- commands ------------------------------------------------------------------------------------------

    def _scope(self, request: web.Request) -> int | None:
        guild = request.match_info.get("guild")
        return int(guild) if guild else None

    async def _put_commands(self, request: web.Request) -> web.Response:
        if request.match_info["app"] != self.application_id:
            return _error(403, 50001, "Missing Access")
        body = request[_JSON]
        problems = [((i, *path), code, msg) for i, cmd in enumerate(body) for path, code, msg in validate_command(cmd)]
        if len(body) > 100:
            problems.append(((), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."))
        if problems:
            return self._invalid(request, problems)
        scope = self._scope(request)
        previous = {(c["name"], c.get("type", 1)): c["id"] for c in self.commands.get(scope, [])}
        stored = []
        for cmd in body:  # Discord keeps a command's id across syncs when name and type match
            cmd_id = previous.get((cmd["name"], cmd.get("type", 1))) or p.snowflake()
            stored.append(
                {
                    "options": [],
                    "default_member_permissions": None,
                    "nsfw": False,
                    "type": 1,
                    **cmd,
                    "id": cmd_id,
                    "application_id": self.application_id,
                    "version": p.snowflake(),
                    **({"guild_id": str(scope)} if scope else {}),
                }
            )
        self.commands[scope] = stored
        return _ok(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _ok(self.commands.get(self._scope(request), []))

    # ---- interactions ---------------------------------------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        inter = self.interactions.get(request.match_info["id"])
        if inter is None or inter.token != request.match_info["token"] or inter.expired:
            self._violate(request, "unknown-interaction", request.match_info["id"])
            return _error(404, 10062, "Unknown interaction")
        elapsed = time.monotonic() - inter.dispatched_at
        if inter.callbacks:
            self._violate(request, "double-ack", f"interaction {inter.id} answered twice")
            return _error(400, 40060, "Interaction has already been acknowledged.")
        if elapsed > self.ack_deadline:
            inter.expired = True  # Discord forgets the interaction, so its followups fail too
            self._violate(request, "ack-deadline", f"first response after {elapsed:.2f}s > {self.ack_deadline}s")
            return _error(404, 10062, "Unknown interaction")
        body, files = request[_JSON], request[_FILES]
        kind, data = body.get("type"), body.get("data") or {}
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,), 5: (4, 5, 6, 7)}.get(inter.type, (4, 5))
        if kind not in allowed:
            self._violate(request, "bad-callback-type", f"type {kind} for interaction type {inter.type}")
            return _error(
                400,
                50035,
                "Invalid Form Body",
                {"type": {"_errors": [{"code": "INTERACTION_RESPONSE_TYPE_INVALID", "message": "bad"}]}},
            )
        problems = (
            validate_modal(data)
            if kind == 9
            else validate_message(data)
            if kind in (4, 7)
            else validate_choices(data)
            if kind == 8
            else []
        )
        if problems:
            return self._invalid(request, problems, wrap="data")
        if kind == 4 and not _has_content(data, files):
            self._violate(request, "empty-message", f"interaction {inter.id}")
            return _error(400, 50006, "Cannot send an empty message")
        inter.callbacks.append({"type": kind, "data": data, "elapsed": elapsed})
        where = {"channel_id": inter.payload["channel_id"], "guild_id": inter.payload.get("guild_id")}
        if kind == 4:
            self.allowed_mentions.append(data.get("allowed_mentions"))
            inter.original = inter.message = self._new_message(
                data, files, message_type=20, webhook=True, interaction=inter, **where
            )
        elif kind == 5:  # the "thinking..." placeholder a later edit or followup fills
            loading = {"content": "", "flags": p.LOADING | ((data.get("flags") or 0) & p.EPHEMERAL)}
            inter.original = self._new_message(loading, {}, message_type=20, webhook=True, interaction=inter, **where)
        elif kind == 8:
            pass  # autocomplete choices: recorded in callbacks, no message
        elif kind in (6, 7):
            inter.original = inter.source
            if kind == 7 and inter.source is not None:
                self.allowed_mentions.append(data.get("allowed_mentions"))
                inter.source.apply(data, self._attachments(data, files, inter.source.attachments))
                inter.message = inter.source
        else:
            inter.modal = data
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        msg = inter.original if kind in (4, 5, 7) else None
        return _ok(
            {
                "interaction": {
                    "id": inter.id,
                    "type": inter.type,
                    "response_message_id": msg and msg.id,
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(msg and msg.ephemeral),
                },
                "resource": {"type": kind, **({"message": msg.to_api()} if msg else {})},
            }
        )

    def _webhook_interaction(self, request: web.Request) -> Interaction | web.Response:
        """The interaction whose token is in a /webhooks/{app}/{token} URL, if it may be used yet."""
        token = request.match_info["token"]
        inter = next((i for i in self.interactions.values() if i.token == token), None)
        if request.match_info["app"] != self.application_id or inter is None or inter.expired:
            self._violate(request, "unknown-webhook", "webhook token of no live interaction")
            return _error(404, 10015, "Unknown Webhook")
        if not inter.callbacks:
            self._violate(request, "followup-before-ack", f"interaction {inter.id} not acknowledged yet")
            return _error(404, 10015, "Unknown Webhook")
        return inter

    async def _followup(self, request: web.Request) -> web.Response:
        inter = self._webhook_interaction(request)
        if isinstance(inter, web.Response):
            return inter
        body, files = request[_JSON], request[_FILES]
        if problems := validate_message(body):
            return self._invalid(request, problems)
        if not _has_content(body, files):
            self._violate(request, "empty-message", f"followup of {inter.id}")
            return _error(400, 50006, "Cannot send an empty message")
        self.allowed_mentions.append(body.get("allowed_mentions"))
        original = inter.original
        if original is not None and original.loading and not original.deleted and original.interaction is inter:
            # Discord's first followup after a deferral replaces the "thinking..." message, keeping its ephemerality.
            flags = (original.flags & p.EPHEMERAL) | ((body.get("flags") or 0) & ~p.EPHEMERAL)
            original.apply({**body, "flags": flags}, self._attachments(body, files, []))
            msg = original
        else:
            msg = self._new_message(
                body,
                files,
                channel_id=inter.payload["channel_id"],
                guild_id=inter.payload.get("guild_id"),
                message_type=20,
                webhook=True,
                interaction=inter,
            )
        inter.followups.append(msg)
        inter.message = msg
        return _ok(msg.to_api()) if request.query.get("wait") in ("1", "true") else web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        inter = self._webhook_interaction(request)
        if isinstance(inter, web.Response):
            return inter
        mid = request.match_info["mid"]
        msg = (
            inter.original
            if mid == "@original"
            else next((m for m in [inter.original, *inter.followups] if m and m.id == mid), None)
        )
        if msg is None or msg.deleted:
            self._violate(request, "unknown-message", f"{mid} of interaction {inter.id}")
            return _error(404, 10008, "Unknown Message")
        return await self._message_verb(request, msg, inter)

    async def _message_verb(
        self, request: web.Request, msg: SentMessage, inter: Interaction | None = None
    ) -> web.Response:
        """GET / PATCH / DELETE of an existing message."""
        if request.method == "GET":
            return _ok(msg.to_api())
        if request.method == "DELETE":
            msg.deleted = True
            return web.Response(status=204)
        if request.method != "PATCH":
            return await self._unknown(request)
        body, files = request[_JSON], request[_FILES]
        if problems := validate_message(body):
            return self._invalid(request, problems)
        self.allowed_mentions.append(body.get("allowed_mentions"))
        msg.apply(body, self._attachments(body, files, msg.attachments))
        msg.flags &= ~p.LOADING  # editing a deferred response fills the placeholder
        if inter is not None:
            inter.edits.append(body)
            inter.message = msg
        return _ok(msg.to_api())

    # ---- channels -------------------------------------------------------------------------------------------

    def _channel(self, channel_id: str) -> dict[str, Any] | None:
        for g in self.guilds:
            for c in g["channels"]:
                if c["id"] == channel_id:
                    return c
        return self._dm_channels.get(channel_id)

    async def _channel_post(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["cid"])
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if not self._bot_can_view(channel):
            return _error(403, 50001, "Missing Access")
        body, files = request[_JSON], request[_FILES]
        if problems := validate_message(body):
            return self._invalid(request, problems)
        if not _has_content(body, files):
            self._violate(request, "empty-message", channel["id"])
            return _error(400, 50006, "Cannot send an empty message")
        self.allowed_mentions.append(body.get("allowed_mentions"))
        msg = self._new_message(
            body,
            files,
            channel_id=channel["id"],
            guild_id=channel.get("guild_id"),
            message_type=19 if body.get("message_reference") else 0,
        )
        return _ok(msg.to_api())

    async def _channel_history(self, request: web.Request) -> web.Response:
        """GET a channel's messages, newest first: up to `limit` (1-100) `before`, `after` or `around` an id.
        Ephemeral messages are nobody's history."""
        channel = self._channel(request.match_info["cid"])
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if not self._bot_can_view(channel):
            return _error(403, 50001, "Missing Access")
        query = request.query
        limit = int(query.get("limit", 50))
        if not 1 <= limit <= 100:
            self._violate(request, "invalid-limit", f"limit={limit}")
            return _error(400, 50035, "Invalid Form Body")
        found = [m for m in self.messages if m.channel_id == channel["id"] and not m.deleted and not m.ephemeral]
        if "before" in query:
            found = [m for m in found if int(m.id) < int(query["before"])]
        if "after" in query:
            found = [m for m in found if int(m.id) > int(query["after"])]
        if "around" in query:
            middle = int(query["around"])
            found = sorted(found, key=lambda m: abs(int(m.id) - middle))[:limit]
        found = sorted(found, key=lambda m: int(m.id), reverse=True)[:limit]
        return _ok([m.to_api() for m in found])

    async def _channel_message(self, request: web.Request) -> web.Response:
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        channel = self._channel(cid)
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        if not self._bot_can_view(channel):
            return _error(403, 50001, "Missing Access")
        msg = next((m for m in self.messages if m.id == mid and m.channel_id == cid and not m.deleted), None)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        return await self._message_verb(request, msg)

    async def _attachment(self, request: web.Request) -> web.Response:
        """The "CDN": a file a member attached, or one the bot sent. No authorisation, as on Discord's CDN."""
        aid = request.match_info["id"]
        found = self.uploads.get(aid) or next((a for m in self.messages for a in m.attachments if a.id == aid), None)
        if found is None:
            return _error(404, 0, "404: Not Found")
        self.downloads.append(aid)
        # Chunked, without a length, as a server that lies about a file's size would send it: the bot must
        # stop reading at its cap. `served` counts what went out before the bot hung up.
        response = web.StreamResponse(headers={"Content-Type": found.content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.served[aid] = 0
        try:
            for start in range(0, len(found.data), ATTACHMENT_CHUNK):
                chunk = found.data[start : start + ATTACHMENT_CHUNK]
                await response.write(chunk)
                self.served[aid] += len(chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the bot stopped reading
            pass
        return response

    async def _open_dm(self, request: web.Request) -> web.Response:
        rid = str(request[_JSON].get("recipient_id"))
        users = [m["user"] for g in self.guilds for m in g["members"]] + [self.owner, self.user]
        user = next((u for u in users if u["id"] == rid), None)
        return _ok(self._dm_channel(user)) if user else _error(404, 10013, "Unknown User")

    # ---- gateway --------------------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = _GatewaySession(self, ws)
        self._sockets.append(session)
        try:
            await session.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await session.receive(json.loads(msg.data))
        finally:
            self._sockets.remove(session)
            if session.ready and not any(s.ready for s in self._sockets):
                self._ready.clear()
            if session.session_id:
                self._sessions[session.session_id] = (session.seq, session.shard)
            await self._notify()
        return ws


class _GatewaySession:
    """One websocket connection: sequence numbers, identify/resume, heartbeats."""

    def __init__(self, fake: FakeDiscord, ws: web.WebSocketResponse) -> None:
        self.fake, self.ws = fake, ws
        self.seq = 0
        self.session_id: str | None = None
        self.shard: tuple[int, int] = (0, 1)  # (id, count) from IDENTIFY; a bot that does not shard is shard 0 of 1
        self.ready = False
        self._lock = asyncio.Lock()  # heartbeat ACKs and test dispatches may interleave

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._lock:
            self.fake.gateway_sent.append(payload)
            await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        await self.send({"op": 0, "t": event, "s": self.seq, "d": data})

    async def receive(self, msg: dict[str, Any]) -> None:
        op, d, fake = msg.get("op"), msg.get("d"), self.fake
        if op == 1:
            fake.heartbeats.append(time.monotonic())
            await self.send({"op": 11})
        elif op == 2:
            fake.identifies.append(d)
            if d.get("token") != fake.token:
                await self.ws.close(code=4004, message=b"Authentication failed.")
                return
            shard_id, count = d.get("shard") or (0, 1)
            if not 0 <= shard_id < count:
                await self.ws.close(code=4010, message=b"Invalid shard.")
                return
            self.shard = (shard_id, count)
            guilds = [g for g in fake.guilds if fake.shard_of(g["id"], count) == shard_id]
            self.session_id = secrets.token_hex(16)
            await self.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": {**fake.bot_user, "verified": True, "mfa_enabled": False},
                    "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
                    "session_id": self.session_id,
                    "resume_gateway_url": fake.gateway_url,
                    "application": {"id": fake.application_id, "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                    "user_settings": {},
                    "presences": [],
                    "geo_ordered_rtc_regions": [],
                    **({"shard": d["shard"]} if "shard" in d else {}),
                },
            )
            bot_member = p.make_member(fake.bot_user)
            for g in guilds:
                await self.dispatch("GUILD_CREATE", {**g, "members": [*g["members"], bot_member]})
            self.ready = True
            fake._ready.set()
        elif op == 6:
            if d.get("token") == fake.token and d.get("session_id") in fake._sessions:
                self.session_id = d["session_id"]
                self.seq, self.shard = fake._sessions[d["session_id"]]
                await self.dispatch("RESUMED", {})
                self.ready = True
                fake._ready.set()
            else:
                await self.send({"op": 9, "d": False})  # cannot resume: the client identifies afresh
        await fake._notify()


def _option_type(value: Any) -> int:
    """Application command option type for a Python value: boolean 5, integer 4, number 10, attachment 11,
    string 3."""
    if isinstance(value, Attachment):
        return 11
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def _has_content(body: dict[str, Any], files: dict[str, Attachment]) -> bool:
    return bool(
        body.get("content")
        or body.get("embeds")
        or body.get("components")
        or body.get("attachments")
        or files
        or body.get("sticker_ids")
        or body.get("poll")
    )


def _sniff(filename: str | None, data: bytes, declared: str | None) -> str:
    """Content type as Discord would report it: discord.py always declares application/octet-stream."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return mimetypes.guess_type(filename or "")[0] or declared or "application/octet-stream"


def _ok(data: Any, status: int = 200) -> web.Response:
    # discord.py only parses JSON when Content-Type is exactly 'application/json' (no '; charset=...'),
    # which web.json_response would add; a bytes body keeps the header bare.
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def _error(status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> web.Response:
    return _ok(p.error(code, message, errors), status)


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)
