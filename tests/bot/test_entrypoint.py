"""`python -m bot` as a real process: configuration errors, `sync`, and a full run ended by SIGTERM.

The process reaches the fake Discord (running in this test's event loop) through LYRICS_DISCORD_API and
LYRICS_DISCORD_GATEWAY. Its environment is built from scratch and it runs in a temporary folder, so
neither a developer's DISCORD_TOKEN nor a .env file can leak in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot.helpers import bot_env
from tests.fakediscord import FakeDiscord
from tests.helpers import REPO

pytestmark = pytest.mark.slow
START_TIMEOUT = 90  # importing torch and discord.py on two busy cores can take a while


def process_env(tmp_path: Path, **overrides) -> dict[str, str]:
    env = bot_env(tmp_path, **overrides)
    env.update(
        PATH=os.environ.get("PATH", ""), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", HOME=str(tmp_path)
    )  # jieba caches in the temp dir; nothing of the developer's is read
    return {key: value for key, value in env.items() if value is not None}


def fake_env(fake: FakeDiscord, tmp_path: Path, **overrides) -> dict[str, str]:
    return process_env(
        tmp_path,
        **{
            "DISCORD_TOKEN": fake.token,
            "LYRICS_DISCORD_API": fake.rest_base,
            "LYRICS_DISCORD_GATEWAY": fake.gateway_url,
            **overrides,
        },
    )


async def run_bot(env: dict[str, str], cwd: Path, *args: str, timeout: float = START_TIMEOUT) -> tuple[int, str, str]:
    """Run `python -m bot args...` to completion; returns (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


def assert_one_line_error(code: int, err: str, *phrases: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and all(p in lines[0] for p in phrases), lines[0]


async def test_missing_token_is_one_line(tmp_path: Path) -> None:
    code, _, err = await run_bot(process_env(tmp_path, DISCORD_TOKEN=None), tmp_path)
    assert_one_line_error(code, err, "DISCORD_TOKEN")


async def test_malformed_ids_are_one_line(tmp_path: Path) -> None:
    code, _, err = await run_bot(process_env(tmp_path, LYRICS_ADMIN_IDS="123,@jay"), tmp_path, "sync")
    assert_one_line_error(code, err, "LYRICS_ADMIN_IDS", "'@jay'")


async def test_rejected_token_and_damaged_database(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    code, _, err = await run_bot(fake_env(fake_discord, tmp_path, DISCORD_TOKEN="wrong-token"), tmp_path)
    assert code != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: Discord rejected DISCORD_TOKEN")

    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not a database" * 100)
    code, _, err = await run_bot(fake_env(fake_discord, tmp_path, LYRICS_DB=damaged), tmp_path)
    assert code != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: cannot open the database")


async def test_a_second_trainer_is_one_line(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    """Shards in several processes: exactly one trains. A second LYRICS_TRAINER=1 on the database stops at once."""
    from bot.store.sqlite import SqliteStore

    async with await SqliteStore.open(tmp_path / "lyrics.db") as trainer:  # the database bot_env points at
        assert await trainer.coordinator.claim_trainer()
        env = fake_env(fake_discord, tmp_path, LYRICS_SHARD_COUNT=2, LYRICS_SHARD_IDS=1, LYRICS_TRAINER=1)
        code, _, err = await run_bot(env, tmp_path)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: another process on SQLite")
    assert "set LYRICS_TRAINER=0" in err and "Traceback" not in err


async def test_sync_publishes_commands_globally(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    code, out, err = await run_bot(fake_env(fake_discord, tmp_path), tmp_path, "sync")
    assert code == 0, err
    names = [c["name"] for c in fake_discord.global_commands]
    assert names[0] == "lyrics" and {"train", "model"} <= set(names)  # one extension per feature adds its own
    assert f"synced {len(names)} global commands: /lyrics, " in out
    assert not fake_discord.identifies  # HTTP only: sync never opens the gateway
    assert fake_discord.violations == []


async def test_run_answer_and_sigterm(fake_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "bot.log"
    env = fake_env(
        fake_discord, tmp_path, LYRICS_MODEL=tiny_bundle, LYRICS_GUILD_IDS=fake_discord.guild["id"], LYRICS_COOLDOWN=0
    )
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
        try:
            await fake_discord.wait_ready(timeout=START_TIMEOUT)
            first = await fake_discord.send_slash_command("lyrics", {"seed": "窗外的麻雀", "length": 20})
            message = await first.wait_final(timeout=30)
            assert message.embeds[0]["description"].startswith("窗外的麻雀")

            # SIGTERM while a song is being written: it is still delivered, then the process exits 0.
            second = await fake_discord.send_slash_command(
                "lyrics", {"seed": "窗外的麻雀", "length": 500}, user=fake_discord.owner
            )
            assert (await second.wait_response(timeout=10))["type"] == 5
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    output = log.read_text()
    assert code == 0, output
    assert "received SIGTERM; shutting down" in output and "shut down cleanly" in output
    assert "Traceback" not in output
    assert second.message is not None and not second.message.loading
    assert second.message.embeds[0]["description"].startswith("窗外的麻雀")
    assert fake_discord.violations == [] and fake_discord.unknown_routes == []
    assert all(m == {"parse": []} for m in fake_discord.allowed_mentions)
    # The database was closed properly: its songs are there for the next start.
    from bot.store import open_store

    async with await open_store(tmp_path / "lyrics.db") as store:
        assert (await store.get_song(1)).seed == "窗外的麻雀"
        assert (await store.get_song(2)).message_id == int(second.message.id)


async def test_a_second_sigterm_exits_at_once(fake_discord: FakeDiscord, tiny_bundle: Path, tmp_path: Path) -> None:
    """The first SIGTERM starts the clean shutdown, which waits for a reply Discord is slow to take; the second
    one ends the process at once, with 128 + 15."""
    log = tmp_path / "bot.log"
    env = fake_env(
        fake_discord, tmp_path, LYRICS_MODEL=tiny_bundle, LYRICS_GUILD_IDS=fake_discord.guild["id"], LYRICS_COOLDOWN=0
    )
    release = fake_discord.hold("PATCH", r"/messages/@original$")  # the song's reply hangs
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
        try:
            await fake_discord.wait_ready(timeout=START_TIMEOUT)
            song = await fake_discord.send_slash_command("lyrics", {"seed": "窗外的麻雀", "length": 20})
            await fake_discord.wait_until(lambda: any(f.hits for f in fake_discord.faults), timeout=30)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert proc.returncode is None  # still shutting down: the reply is in progress
            proc.send_signal(signal.SIGTERM)
            started = asyncio.get_running_loop().time()
            code = await asyncio.wait_for(proc.wait(), 10)
            took = asyncio.get_running_loop().time() - started
        finally:
            release.set()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    output = log.read_text()
    assert code == 128 + signal.SIGTERM, output
    assert took < 2.0, f"the second SIGTERM took {took:.1f}s to end the process"
    assert "received SIGTERM again; exiting at once" in output and "Traceback" not in output
    assert song.response_type == 5


async def test_a_locked_database_is_one_line(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    """Another program holds the SQLite file locked (a backup, the sqlite3 shell): sqlite3.OperationalError at
    start-up is one line naming the file, not a traceback."""
    database = tmp_path / "lyrics.db"  # the database bot_env points at
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode = DELETE")  # an exclusive lock keeps readers out (WAL would not)
        holder.execute("CREATE TABLE held (x)")
        holder.execute("BEGIN EXCLUSIVE")
        code, _, err = await run_bot(fake_env(fake_discord, tmp_path), tmp_path)
    finally:
        holder.close()
    assert code == 2
    assert_one_line_error_last(err, "cannot use the database", str(database), "locked")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Nobody may create or change anything in `path`, root included (chattr +i): PermissionError, as a folder
    or file of another user gives. Skips the test where the file system or the user cannot do that."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def test_no_permission_on_the_data_folder_or_lock_file_is_one_line(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    """A data folder or a trainer lock file the bot may not write is one line naming it, not "cannot reach
    Discord" (a PermissionError is an OSError, as network failures are)."""
    data = tmp_path / "data"
    data.mkdir()
    sqlite3.connect(data / "lyrics.db").close()  # the database may be written, its folder not (its journal goes there)
    with immutable(data):
        code, _, err = await run_bot(fake_env(fake_discord, tmp_path, LYRICS_DB=data / "lyrics.db"), tmp_path)
    assert code == 2
    assert_one_line_error_last(err, str(data / "lyrics.db"))
    assert "cannot reach Discord" not in err

    lock = tmp_path / "lyrics.db.trainer"  # beside the database bot_env points at
    lock.touch()
    with immutable(lock):
        env = fake_env(fake_discord, tmp_path, LYRICS_SHARD_COUNT=2, LYRICS_SHARD_IDS=1, LYRICS_TRAINER=1)
        code, _, err = await run_bot(env, tmp_path)
    assert code == 2
    assert_one_line_error_last(err, "no permission to use", str(lock))
    assert "cannot reach Discord" not in err


def assert_one_line_error_last(err: str, *phrases: str) -> None:
    """The process logged as it started, then ended with one `error:` line and no traceback."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(p in last for p in phrases), last
