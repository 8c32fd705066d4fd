"""Fixtures shared by every test package: a tiny trained bundle and the local Discord stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.train import train
from tests.fakediscord.fixtures import *  # noqa: F403  (fake_discord, running_bot)
from tests.helpers import SAMPLE_CORPUS, tiny_config

__all__ = ["tiny_config"]  # tests/model/test_sample.py imports it from here


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained once per test session on the committed sample corpus."""
    out = tmp_path_factory.mktemp("bundle") / "tiny.pt"
    train(tiny_config(SAMPLE_CORPUS, out))
    return out
