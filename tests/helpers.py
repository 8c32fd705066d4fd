"""Helpers shared by every test package: where things are, and small models and corpora to train on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from model.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO / "data" / "sample_lyrics.txt"
REFERENCE_CORPUS = REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip"

WORDS = [
    "窗外",
    "的",
    "雨",
    "下",
    "个",
    "不停",
    "我",
    "在",
    "街角",
    "等",
    "你",
    "回忆",
    "像",
    "老歌",
    "天空",
    "很",
    "蓝",
    "微笑",
    "甜",
    "秋天",
    "琴声",
    "飘",
]


# `python -m model train` flags for a model that trains in a second or two (the CLI twin of tiny_config).
TINY_FLAGS = [
    "--hidden", "32", "--embed", "16", "--batch-size", "8", "--seq-len", "16", "--device", "cpu", "--threads", "1",
    "--judge-songs", "0",
]  # fmt: skip


def tiny_config(corpus: Path, out: Path, **overrides) -> TrainConfig:
    """A model small enough to train in a second or two on two cores."""
    values = dict(
        corpus=str(corpus),
        out=str(out),
        hidden=48,
        embed=24,
        epochs=3,
        batch_size=8,
        seq_len=16,
        min_count=2,
        device="cpu",
        seed=0,
        patience=3,
        threads=1,
        judge_songs=0,  # the song-quality report has tests of its own
    )
    values.update(overrides)
    return TrainConfig(**values)


def write_corpus(path: Path, lines: int = 400, seed: int = 0) -> Path:
    """Lines from a small word list with a learnable pattern (each word tends to follow its predecessor)."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        i = rng.randrange(len(WORDS))
        line = []
        for _ in range(rng.randint(3, 6)):
            line.append(WORDS[i])
            i = (i + rng.choice([1, 1, 1, 2])) % len(WORDS)
        out.append("".join(line))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def run_cli(*args: object, timeout: float = 180, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`python -m model ARGS` in a subprocess (from the repository root unless `cwd` says), as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "model", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
    )
