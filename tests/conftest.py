"""Fixtures shared by every test package: a tiny trained bundle, the local Discord stand-in, and a throwaway
PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from model.train import train
from tests.fakediscord.fixtures import *  # noqa: F403  (fake_discord, running_bot)
from tests.helpers import SAMPLE_CORPUS, tiny_config
from tests.postgres import PostgresMissing, Server, throwaway_server

__all__ = ["tiny_config"]  # tests/model/test_sample.py imports it from here


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained once per test session on the committed sample corpus."""
    out = tmp_path_factory.mktemp("bundle") / "tiny.pt"
    train(tiny_config(SAMPLE_CORPUS, out))
    return out


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """One PostgreSQL server for the whole session (started by the first test that needs it, a second or two).

    Without PostgreSQL the tests that need it fail, saying what to install: they are never skipped silently.
    """
    try:
        with throwaway_server() as server:
            yield server
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def postgres_url(postgres_server: Server) -> AsyncIterator[str]:
    """The URL of a fresh, empty database on the session's server, dropped after the test."""
    async with postgres_server.database() as url:
        yield url
