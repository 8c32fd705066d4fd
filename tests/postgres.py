"""A throwaway PostgreSQL server for the tests and benchmarks: pytest-postgresql's executor (pg_ctl initdb, start,
stop) on a free loopback port, with its data in a temporary folder deleted afterwards.

    with throwaway_server() as server:                 # initdb and start: a few seconds
        async with server.database() as url:          # a fresh, empty database, dropped afterwards
            store = await open_store(url)

`python -m tests.postgres` starts and stops one, to check a machine (CI does, before the tests).

pg_ctl is found without a manual step: $LYRICS_PG_CTL, else PATH, else `pg_config --bindir`, else the newest
/usr/lib/postgresql/*/bin/pg_ctl (where Debian and Ubuntu install the server, off PATH). PostgreSQL refuses
to run as root, so when the tests run as root (a CI container) the server runs as the `postgres` user the
server package creates. A machine without PostgreSQL gets PostgresMissing, saying what to install: the tests
marked `postgres` then fail (they are never skipped), or can be left out with `pytest -m "not postgres"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import port_for
from mirakuru.exceptions import AlreadyRunning
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import AsyncDatabaseJanitor

PG_CTL_ENV = "LYRICS_PG_CTL"
SERVER_USER = "postgres"  # the superuser initdb creates, and (as root) the system user the server runs as
# A test server keeps nothing: no fsync (pytest-postgresql passes -F too), no WAL flushes at commit.
SERVER_OPTIONS = "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
START_ATTEMPTS = 3
START_TIMEOUT_S = 120  # pg_ctl start -w on a busy 2-core machine
_databases = itertools.count(1)


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine (or no user to run them as)."""


def find_pg_ctl() -> Path:
    """Where pg_ctl is; raises PostgresMissing saying how to install it or point at it."""
    if named := os.environ.get(PG_CTL_ENV):
        if os.access(named, os.X_OK):
            return Path(named)
        raise PostgresMissing(f"{PG_CTL_ENV}={named} is not an executable pg_ctl")
    if found := shutil.which("pg_ctl"):
        return Path(found)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10)
        candidate = Path(bindir.stdout.strip()) / "pg_ctl"
        if os.access(candidate, os.X_OK):
            return candidate
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: _version(p.parts[-3]))
    if versions:
        return versions[-1]
    raise PostgresMissing(
        "PostgreSQL server binaries (pg_ctl) were not found: install them (Debian/Ubuntu: apt-get install "
        f"postgresql), or set {PG_CTL_ENV} to pg_ctl's path. The tests marked `postgres` need them; "
        "leave those out with `pytest -m 'not postgres'`"
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass
class Server:
    """A running throwaway server: its address, and fresh databases on it."""

    host: str
    port: int

    def url(self, dbname: str) -> str:
        return f"postgresql://{SERVER_USER}@{self.host}:{self.port}/{dbname}"

    @contextlib.asynccontextmanager
    async def database(self, name: str | None = None) -> AsyncIterator[str]:
        """A new empty database; dropped afterwards (its connections cut first). Yields its URL."""
        dbname = name or f"lyrics_{os.getpid()}_{next(_databases)}"
        async with AsyncDatabaseJanitor(user=SERVER_USER, host=self.host, port=self.port, dbname=dbname):
            yield self.url(dbname)


@contextlib.contextmanager
def throwaway_server() -> Iterator[Server]:
    """Start a server (initdb, pg_ctl start) in a temporary folder; stop it and delete the folder on exit."""
    pg_ctl = find_pg_ctl()
    folder = Path(tempfile.mkdtemp(prefix="lyrics-postgres-"))
    try:
        executor = _start(_as_server_user(pg_ctl, folder), folder)
        try:
            yield Server(executor.host, executor.port)
        finally:
            executor.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start(executable: Path, folder: Path) -> PostgreSQLExecutor:
    """Start the server on a free port, trying another if a program took the chosen one first."""
    for _ in range(START_ATTEMPTS):
        executor = PostgreSQLExecutor(
            executable=str(executable),
            host="127.0.0.1",
            port=port_for.select_random(),
            datadir=str(folder / "data"),
            unixsocketdir=str(folder),
            logfile=str(folder / "postgres.log"),
            startparams="-w",
            dbname="postgres",
            user=SERVER_USER,
            postgres_options=SERVER_OPTIONS,
        )
        try:
            executor.start()
        except AlreadyRunning:  # something listens on that port already
            continue
        # mirakuru returns as soon as the port accepts connections, which may be another program's that bound
        # it a moment ago; `pg_ctl start -w` exits 0 only once this server is up and ready for queries.
        assert executor.process is not None
        if executor.process.wait(timeout=START_TIMEOUT_S) == 0:
            return executor
    log = (folder / "postgres.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"PostgreSQL did not start in {START_ATTEMPTS} tries; its log ends:\n{log}")


def _as_server_user(pg_ctl: Path, folder: Path) -> Path:
    """pg_ctl itself, or, as root, a wrapper that runs it as the `postgres` user (given the folder)."""
    if os.geteuid() != 0:
        return pg_ctl
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresMissing(
            f"the tests run as root, which PostgreSQL refuses to run as, and there is no {SERVER_USER!r} user to"
            " run it as (the server package creates one): install the server package or run the tests as a user"
        ) from None
    setpriv = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None:
        raise PostgresMissing("the tests run as root and need util-linux's setpriv to run PostgreSQL as another user")
    os.chown(folder, user.pw_uid, user.pw_gid)
    wrapper = folder / "pg_ctl"
    wrapper.write_text(
        f'#!/bin/sh\nexec "{setpriv}" --reuid={user.pw_uid} --regid={user.pw_gid} --init-groups -- "{pg_ctl}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def main() -> int:
    """Start a throwaway server and create a database on it: what the tests marked `postgres` need."""
    import asyncpg

    started = time.monotonic()
    try:
        with throwaway_server() as server:

            async def check() -> str:
                async with server.database() as url:
                    conn = await asyncpg.connect(url)
                    try:
                        return await conn.fetchval("SHOW server_version")
                    finally:
                        await conn.close()

            version = asyncio.run(check())
    except PostgresMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    print(f"PostgreSQL {version} for the tests: {find_pg_ctl()} (started and stopped in {took:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
