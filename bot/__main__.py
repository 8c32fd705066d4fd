"""`python -m bot` runs the bot; `python -m bot sync` publishes its slash commands globally, once.

Configuration comes from the environment and `.env` (see bot/settings.py). Problems a person must
fix (no token, a bad id list, a rejected token, a damaged database) end with one line on stderr and
a non-zero exit, never a traceback. SIGTERM and SIGINT shut the bot down cleanly within one deadline
(bot.client.SHUTDOWN_SECONDS, inside `docker stop`'s 10 s): replies in progress finish or say the bot is
restarting, the database is closed, and the exit status is 0. A second SIGTERM or Ctrl+C exits at once
(status 128 + the signal's number), killing a training child first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import aiohttp
import discord

from bot.client import LyricsBot, create_bot, use_discord_endpoints
from bot.settings import Settings, SettingsError
from bot.store import DatabaseError, StoreError, TrainerTakenError

log = logging.getLogger("bot")

EXIT_CONFIG = 2  # the configuration or the environment needs fixing
EXIT_FAILED = 1  # the bot could not start or stopped on an error


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot", description="The lyrics Discord bot.")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "sync"),
        default="run",
        help="run the bot (default), or sync its slash commands globally and exit",
    )
    return parser.parse_args(argv)


async def run(settings: Settings) -> bool:
    """Run until Discord disconnects us for good or a SIGTERM/SIGINT arrives.

    Returns whether the process must exit without waiting for its threads (a batch was abandoned in its
    worker thread at the shutdown deadline; the interpreter would otherwise wait for it at exit).
    """
    bot = create_bot(settings)
    stop = asyncio.Event()
    _on_signals(stop, bot)
    async with bot:
        serving = asyncio.create_task(bot.start(settings.token), name="lyrics-bot")
        stopping = asyncio.create_task(stop.wait(), name="lyrics-bot-signals")
        done, _ = await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:  # an error (bad token, unreachable Discord): raise it
            stopping.cancel()
            serving.result()
            return bot.engine.abandoned
        await bot.close()
        try:
            await serving  # returns once the gateway connection is closed
        except Exception as exc:  # noqa: BLE001 - a signal during start-up cuts the start short on purpose
            log.info("start-up was interrupted by the shutdown (%s: %s)", type(exc).__name__, exc)
    return bot.engine.abandoned


async def sync(settings: Settings) -> None:
    """Log in over HTTP only (no gateway) and publish the command tree globally."""
    bot: LyricsBot = create_bot(settings, serve=False)
    async with bot:
        await bot.login(settings.token)  # runs setup_hook, which loads the extensions
        synced = await bot.tree.sync()
    names = ", ".join(f"/{command.name}" for command in synced)
    print(f"synced {len(synced)} global commands: {names} (Discord may take up to an hour to show them everywhere)")


def _on_signals(stop: asyncio.Event, bot: LyricsBot) -> None:
    """discord.py leaves signals alone; without this, SIGTERM would kill the process mid-reply.

    The first SIGTERM or SIGINT starts the clean shutdown; a second one means "now": the bot's abort
    callbacks run (the training child is killed) and the process exits without waiting for anything.
    """
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("received %s again; exiting at once", sig.name)
            bot.abort()
            logging.shutdown()  # flush the log before the process goes
            os._exit(128 + sig.value)
        log.info("received %s; shutting down (send it again to exit at once)", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C still raises KeyboardInterrupt
            loop.add_signal_handler(sig, handle, sig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    discord.utils.setup_logging(level=logging.INFO)
    use_discord_endpoints(settings.discord_api, settings.discord_gateway)
    try:
        if args.command == "sync":
            asyncio.run(sync(settings))
        elif asyncio.run(run(settings)):
            log.warning("a batch was still being written at the shutdown deadline; exiting without waiting for it")
            logging.shutdown()
            os._exit(0)  # the database is closed; only the abandoned worker thread is left
    except discord.LoginFailure:
        return _fail("Discord rejected DISCORD_TOKEN: copy a fresh token from the developer portal", EXIT_CONFIG)
    except discord.PrivilegedIntentsRequired as exc:
        return _fail(f"Discord refused the gateway intents: {exc}", EXIT_CONFIG)
    except TrainerTakenError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except DatabaseError as exc:  # unreachable, unreadable, locked by another program, a full disk...
        return _fail(f"cannot use the database: {exc}", EXIT_CONFIG)
    except StoreError as exc:  # damaged, not the bot's, of a newer schema
        return _fail(f"cannot open the database: {exc}", EXIT_CONFIG)
    except (aiohttp.ClientError, discord.GatewayNotFound) as exc:
        return _fail(f"cannot reach Discord: {exc}", EXIT_FAILED)
    except PermissionError as exc:  # the data folder, the database or its lock file (<database>.trainer)
        return _fail(
            f"no permission to use {exc.filename or 'a data file'} ({exc.strerror}): check the owner and mode of the"
            " bot's data folder (LYRICS_DB) and the files in it",
            EXIT_CONFIG,
        )
    except OSError as exc:
        return _fail(f"cannot reach Discord: {exc}", EXIT_FAILED)
    except discord.HTTPException as exc:
        return _fail(f"Discord answered with an error: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:  # only where signal handlers are unavailable
        pass
    return 0


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
