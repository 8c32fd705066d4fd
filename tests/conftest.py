"""Fixtures shared by every test package: a tiny trained bundle and the local Discord stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.config import TrainConfig
from model.train import train
from tests.fakediscord.fixtures import *  # noqa: F401,F403  (fake_discord, running_bot)

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO / "data" / "sample_lyrics.txt"
REFERENCE_CORPUS = REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip"


def tiny_config(corpus: Path, out: Path, **overrides) -> TrainConfig:
    """A model small enough to train in a second or two on two cores."""
    values = dict(corpus=str(corpus), out=str(out), hidden=48, embed=24, epochs=3, batch_size=8, seq_len=16,
                  min_count=2, device="cpu", seed=0, patience=3, threads=1)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained once per test session on the committed sample corpus."""
    out = tmp_path_factory.mktemp("bundle") / "tiny.pt"
    train(tiny_config(SAMPLE_CORPUS, out))
    return out
