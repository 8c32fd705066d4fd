"""The bot's configuration: one frozen `Settings` read from environment variables (and `.env`).

    settings = Settings.from_env()   # raises SettingsError with a one-line, user-facing message

Real environment variables win over `.env`, so a deployment can override a checked-in default
without editing the file. Nothing here touches Discord or torch: parsing is cheap and testable.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yarl
from dotenv import dotenv_values

from model.corpus import SAMPLE_CORPUS, default_corpus
from model.stepper import PRECISIONS

DEVICES = ("auto", "cpu", "cuda", "mps")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(Exception):
    """The configuration is unusable; the message names the variable and what to change."""


# An interaction's token lasts 15 minutes: a song must be answered (even with "try again") before then.
MAX_REQUEST_TIMEOUT_S = 14 * 60.0


@dataclass(frozen=True)
class Limits:
    """How much work the bot accepts at once, so one member (or a burst) cannot starve the rest."""

    cooldown_s: float = 5.0  # per member, between two accepted /lyrics
    per_user: int = 1  # songs one member may have in flight
    max_queue: int = 500  # songs waiting for a batch; beyond that members are told to try again
    batching: bool = True  # gather concurrent requests into one forward pass (off only to benchmark)
    max_batch: int = 64  # requests per batched forward pass (bench/bench_bot.py: 50 at once in one batch)
    request_timeout_s: float = 600.0  # the longest a member waits for one song, queue included
    batch_timeout_s: float = 120.0  # a batch running longer has wedged: its songs fail, the next get a new thread
    guild_queue: int = 0  # songs one server may have waiting; 0: half of max_queue (at least 1)

    @property
    def guild_share(self) -> int:
        """The most songs one server may have waiting, so that one server cannot fill the whole queue."""
        return min(self.guild_queue, self.max_queue) if self.guild_queue else max(1, self.max_queue // 2)


@dataclass(frozen=True)
class TrainSettings:
    """How /train runs `python -m model train` beside the bot."""

    processes: int = 1  # >1: launch under torchrun with this many processes (the batch size stays global)
    threads: int = 1  # torch threads per training process: leave the rest of the cores to /lyrics
    args: tuple[str, ...] = ()  # more `python -m model train` flags, e.g. ("--hidden", "256")
    update_s: float = 5.0  # least time between two edits of the progress message (Discord rate-limits edits)


@dataclass(frozen=True)
class Sharding:
    """Which of the bot's shards this process runs, and whether it is the one that trains and swaps models.

    Discord requires shards from 2,500 servers on; big bots run them in several processes, on several
    machines, which then share one database (LYRICS_DATABASE_URL) and one model file.
    """

    count: int | None = None  # None: Discord's recommended count (GET /gateway/bot)
    ids: tuple[int, ...] | None = None  # None: all of them
    trainer: bool = True  # trains and promotes models; the others watch the model file and reload it
    model_poll_s: float = 2.0  # how often a process that is not the trainer looks at the model file
    # PostgreSQL: the trainer's claim is a lease it renews every third of this; a trainer that dies (or loses
    # its database) for longer lets another take over after at most this long.
    trainer_lease_s: float = 45.0

    @property
    def partial(self) -> bool:
        """Whether other processes run the other shards (so /train and /corpus are handed to the trainer)."""
        return self.ids is not None and self.count is not None and len(self.ids) < self.count


# Flags the bot sets itself for every run; LYRICS_TRAIN_ARGS may not override them.
_BOT_TRAIN_FLAGS = ("--corpus", "--added-corpora", "--out", "--progress", "--resume", "--threads")


@dataclass(frozen=True)
class Settings:
    """Everything `python -m bot` needs, validated once at start-up."""

    token: str = field(repr=False)  # never printed in logs or reprs
    model_path: Path = Path("models/lyrics.pt")
    db_path: Path = Path("data/lyrics.db")
    database_url: str | None = field(default=None, repr=False)  # postgresql://...: may hold a password
    corpus_path: Path = SAMPLE_CORPUS  # from_env: data/jaychou_lyrics.txt.zip if fetched, else the sample
    corpora_path: Path = Path("data/corpora")  # lyrics owners added from chat (/corpus add)
    corpora_max_bytes: int = 64 * 1024 * 1024  # all the files added from chat together
    # Where /corpus add may download attachments from: Discord's own attachment hosts (tests: the stand-in's).
    attachment_hosts: tuple[str, ...] = ("cdn.discordapp.com", "media.discordapp.net")
    admin_ids: frozenset[int] = frozenset()  # the bot's owners, with the application's owner and team
    guild_ids: tuple[int, ...] = ()
    train_guild_ids: frozenset[int] = frozenset()  # servers whose Administrators count as owners too
    device: str = "auto"
    precision: str = "auto"  # the network's products while writing (model.stepper): auto, float32 or bfloat16
    torch_threads: int = 0  # 0: bot.engine.default_torch_threads
    limits: Limits = Limits()
    train: TrainSettings = TrainSettings()
    sharding: Sharding = Sharding()
    # Development and tests only: point discord.py at a local Discord stand-in instead of discord.com.
    discord_api: str | None = None
    discord_gateway: str | None = None

    @property
    def database(self) -> str:
        """What `bot.store.open_store` opens: the PostgreSQL URL if there is one, else the SQLite file."""
        return self.database_url or str(self.db_path)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env") -> Settings:
        """Read settings from `environ` (default `os.environ`) over the values in `env_file`, if it exists.

        Raises SettingsError naming the first problem found.
        """
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            # dotenv_values leaves os.environ alone; a key without "=value" parses as None.
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls._parse(values)

    @classmethod
    def _parse(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str:
            return env.get(name, "").strip()

        token = get("DISCORD_TOKEN")
        if not token:
            raise SettingsError(
                "DISCORD_TOKEN is not set: copy the bot token from https://discord.com/developers/applications"
                " (your application > Bot > Reset Token) into the environment or a .env file"
            )
        if any(ch.isspace() for ch in token):
            raise SettingsError("DISCORD_TOKEN contains spaces: paste only the token itself")

        device = get("LYRICS_DEVICE").lower() or "auto"
        if device not in DEVICES and not device.startswith("cuda:"):
            raise SettingsError(f"LYRICS_DEVICE={device!r} is not one of {', '.join(DEVICES)}")
        precision = get("LYRICS_PRECISION").lower() or "auto"
        if precision not in PRECISIONS:
            raise SettingsError(f"LYRICS_PRECISION={precision!r} is not one of {', '.join(PRECISIONS)}")

        if get("LYRICS_MAX_IN_FLIGHT"):
            raise SettingsError(
                "LYRICS_MAX_IN_FLIGHT is gone: songs beyond a batch now wait in a queue instead of being refused."
                " Remove it, and set LYRICS_MAX_QUEUE to bound how many may wait (default 500)"
            )
        defaults = Limits()
        request_timeout = _float(env, "LYRICS_REQUEST_TIMEOUT", defaults.request_timeout_s, minimum=1.0)
        if request_timeout > MAX_REQUEST_TIMEOUT_S:
            raise SettingsError(
                f"LYRICS_REQUEST_TIMEOUT={request_timeout:g} must be at most {MAX_REQUEST_TIMEOUT_S:g} seconds:"
                " Discord lets the bot answer a command for 15 minutes only"
            )
        limits = Limits(
            cooldown_s=_float(env, "LYRICS_COOLDOWN", defaults.cooldown_s, minimum=0.0),
            per_user=_int(env, "LYRICS_USER_IN_FLIGHT", defaults.per_user, minimum=1),
            max_queue=_int(env, "LYRICS_MAX_QUEUE", defaults.max_queue, minimum=1),
            batching=_bool(env, "LYRICS_BATCHING", defaults.batching),
            max_batch=_int(env, "LYRICS_MAX_BATCH", defaults.max_batch, minimum=1),
            request_timeout_s=request_timeout,
            batch_timeout_s=_float(env, "LYRICS_BATCH_TIMEOUT", defaults.batch_timeout_s, minimum=1.0),
            guild_queue=_int(env, "LYRICS_GUILD_QUEUE", defaults.guild_queue, minimum=0),
        )

        return cls(
            token=token,
            model_path=_readable_file(env, "LYRICS_MODEL", cls.model_path),
            db_path=_writable_file(env, "LYRICS_DB", cls.db_path),
            database_url=_database_url(env, "LYRICS_DATABASE_URL"),
            corpus_path=_readable_file(env, "LYRICS_CORPUS", default_corpus()),
            corpora_path=_folder(env, "LYRICS_CORPORA", cls.corpora_path),
            corpora_max_bytes=_int(env, "LYRICS_CORPORA_MAX_BYTES", cls.corpora_max_bytes, minimum=1),
            attachment_hosts=_hosts(env, "LYRICS_ATTACHMENT_HOSTS", cls.attachment_hosts),
            admin_ids=frozenset(_ids(env, "LYRICS_ADMIN_IDS")),
            guild_ids=tuple(dict.fromkeys(_ids(env, "LYRICS_GUILD_IDS"))),  # dedupe, keep order
            train_guild_ids=frozenset(_ids(env, "LYRICS_TRAIN_GUILD_IDS")),
            device=device,
            precision=precision,
            torch_threads=_int(env, "LYRICS_TORCH_THREADS", 0, minimum=0),
            limits=limits,
            train=TrainSettings(
                processes=_int(env, "LYRICS_TRAIN_PROCESSES", 1, minimum=1),
                threads=_int(env, "LYRICS_TRAIN_THREADS", 1, minimum=1),
                args=_train_args(env, "LYRICS_TRAIN_ARGS"),
                update_s=_float(env, "LYRICS_TRAIN_UPDATE_INTERVAL", TrainSettings.update_s, minimum=0.0),
            ),
            sharding=_sharding(env),
            discord_api=_url(env, "LYRICS_DISCORD_API", ("http://", "https://")),
            discord_gateway=_url(env, "LYRICS_DISCORD_GATEWAY", ("ws://", "wss://")),
        )


# ---------------------------------------------------------------------------------------------
# one parser per kind of value; each names the variable in its error


def _ids(env: Mapping[str, str], name: str) -> list[int]:
    """A comma-separated list of Discord ids (snowflakes); blanks between commas are ignored."""
    ids = []
    for part in env.get(name, "").split(","):
        part = part.strip()
        if not part:
            continue
        # Snowflakes are positive and fit in 64 bits; anything else is a typo (a name, a mention, ...).
        if not part.isascii() or not part.isdigit() or not 0 < int(part) < 2**64:
            raise SettingsError(
                f"{name} must be Discord ids separated by commas (e.g. 123456789012345678,234567890123456789);"
                f" {part!r} is not an id"
            )
        ids.append(int(part))
    return ids


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise SettingsError(f"{name}={raw} must be a finite number of at least {minimum:g}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} must be on or off (1/0, true/false, yes/no)")


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(schemes):
        raise SettingsError(f"{name}={raw!r} must start with {' or '.join(schemes)}")
    return raw


def _hosts(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of host names (no scheme, no path); unset or blank: `default`."""
    hosts = tuple(h.strip().lower() for h in env.get(name, "").split(",") if h.strip())
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.:\[\]-]+", host):
            raise SettingsError(f"{name}: {host!r} is not a host name; list names such as cdn.discordapp.com")
    return hosts or default


def _database_url(env: Mapping[str, str], name: str) -> str | None:
    """A PostgreSQL URL (postgresql://user:password@host:port/database); checked here, connected to at start-up."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise SettingsError(
            f"{name} must be a PostgreSQL URL such as postgresql://bot:password@db.example.com:5432/lyrics"
            " (leave it unset to use the SQLite file LYRICS_DB)"
        )
    try:
        url = yarl.URL(raw)
        url.port  # noqa: B018 - a port that is not a number only fails when read
    except ValueError as exc:
        raise SettingsError(f"{name} is not a valid URL: {exc}") from None
    if not url.path.strip("/") and "dbname" not in url.query:
        raise SettingsError(f"{name} names no database: add it after the host, e.g. .../lyrics")
    return raw


def _sharding(env: Mapping[str, str]) -> Sharding:
    count = _int(env, "LYRICS_SHARD_COUNT", 0, minimum=1) or None
    raw_ids = env.get("LYRICS_SHARD_IDS", "").strip()
    ids: tuple[int, ...] | None = None
    if raw_ids:
        if count is None:
            raise SettingsError(
                "LYRICS_SHARD_IDS needs LYRICS_SHARD_COUNT: the total number of shards, across every process"
            )
        parts = [part.strip() for part in raw_ids.split(",") if part.strip()]
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise SettingsError(f"LYRICS_SHARD_IDS={raw_ids!r} must be shard numbers separated by commas, e.g. 0,1")
        ids = tuple(dict.fromkeys(int(part) for part in parts))
        if not ids:
            raise SettingsError("LYRICS_SHARD_IDS is empty: name the shards this process runs, e.g. 0,1")
        if too_big := [shard for shard in ids if shard >= count]:
            raise SettingsError(
                f"LYRICS_SHARD_IDS has shard {too_big[0]}, but shards are numbered 0 to {count - 1}"
                f" (LYRICS_SHARD_COUNT={count})"
            )
    return Sharding(
        count=count,
        ids=ids,
        # A process running every shard is the only one, so it trains; with several, exactly one says so.
        trainer=_bool(env, "LYRICS_TRAINER", not Sharding(count, ids).partial),
        model_poll_s=_float(env, "LYRICS_MODEL_POLL", Sharding.model_poll_s, minimum=0.1),
        trainer_lease_s=_float(env, "LYRICS_TRAINER_LEASE", Sharding.trainer_lease_s, minimum=1.0),
    )


def _train_args(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Extra `python -m model train` flags, split like a shell would (quotes allowed), checked against the
    child's own flags (TrainConfig's) by an argparse parser with allow_abbrev=False: an abbreviation such as
    `--ou` (which the child's parser would read as `--out`) is refused like any unknown flag, so nothing
    gets past the flags the bot sets itself."""
    raw = env.get(name, "").strip()
    try:
        args = tuple(shlex.split(raw))
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} cannot be split into flags: {exc}") from None
    if not args:
        return args
    parser = _train_parser()
    try:
        _, unknown = parser.parse_known_args(args)
    except argparse.ArgumentError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    if unknown:
        raise SettingsError(
            f"{name}: {' '.join(unknown)!r} is not a `python -m model train` flag"
            " (spell flags in full: abbreviations are not accepted)"
        )
    for arg in args:
        spelled = arg.split("=", 1)[0]
        if spelled in _BOT_TRAIN_FLAGS or spelled.replace("--no-", "--", 1) in _BOT_TRAIN_FLAGS:
            raise SettingsError(f"{name} may not contain {spelled}: the bot sets it for every run")
    return args


def _train_parser() -> argparse.ArgumentParser:
    """The child's `train` flags, none required, without abbreviations, raising instead of exiting."""
    # Imported here: model.config imports torch, which parsing settings without LYRICS_TRAIN_ARGS never needs.
    from model import config

    parser = argparse.ArgumentParser(prog="LYRICS_TRAIN_ARGS", allow_abbrev=False, exit_on_error=False, add_help=False)
    config.add_arguments(parser)
    parser.add_argument("--progress")
    for action in parser._actions:  # only the flags are checked here; --corpus comes from the bot
        action.required = False
    return parser


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name, "").strip()
    return Path(raw).expanduser() if raw else default


def _readable_file(env: Mapping[str, str], name: str, default: Path) -> Path:
    """A file the bot reads. It may not exist yet (no model trained, no corpus uploaded), but if
    something is there it must be a readable file: better to say so now than on the first request."""
    path = _path(env, name, default)
    if path.exists():
        if not path.is_file():
            raise SettingsError(f"{name}={str(path)!r} is not a file")
        if not os.access(path, os.R_OK):
            raise SettingsError(f"{name}={str(path)!r} is not readable by this user")
    return path


def _folder(env: Mapping[str, str], name: str, default: Path) -> Path:
    """A folder the bot writes files into: created when first needed, so it need not exist yet."""
    path = _path(env, name, default)
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{name}={str(path)!r} is not a folder")
    return path


def _writable_file(env: Mapping[str, str], name: str, default: Path) -> Path:
    """A file the bot writes (the database): it or the first folder above it that exists must be writable."""
    path = _path(env, name, default)
    if path.exists():
        if not path.is_file():
            raise SettingsError(f"{name}={str(path)!r} is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise SettingsError(f"{name}={str(path)!r} is not readable and writable by this user")
        return path
    folder = path.absolute().parent
    while not folder.exists():  # the store creates missing folders, so the nearest existing one decides
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SettingsError(f"{name}={str(path)!r} cannot be created: {str(folder)!r} is not a writable folder")
    return path
