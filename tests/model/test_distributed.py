"""Training under torchrun: two CPU processes with gloo, loopback only."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.checkpoint import load_bundle, safe_load
from tests.helpers import REPO, TINY_FLAGS, write_corpus

# Words composed from their characters, some spelled out each epoch (the same way on every process); the
# dropouts that draw per process are off, so one process and two see the same model.
TINY = [
    *TINY_FLAGS, "--min-count", "2", "--seed", "0", "--dropout", "0", "--embed-dropout", "0",
    "--compose", "mean", "--compose-output", "--spell-dropout", "0.3", "--word-dropout", "0", "--char-dropout", "0",
]  # fmt: skip


def model_cmd(nproc: int, *args) -> list[str]:
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "--max_restarts=0",
            "-m",
            "model",
        ]
        if nproc > 1
        else [sys.executable, "-m", "model"]
    )
    return launcher + [str(a) for a in args]


def run_model(nproc: int, *args, timeout=180) -> list[dict]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(model_cmd(nproc, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("ddp") / "corpus.txt", lines=300)


def test_two_processes_match_one_with_the_same_global_batch(corpus, tmp_path):
    one = run_model(
        1,
        "train",
        "--corpus",
        corpus,
        "--out",
        tmp_path / "one" / "m.pt",
        "--epochs",
        "1",
        "--progress",
        "jsonl",
        *TINY,
    )
    two = run_model(
        2,
        "train",
        "--corpus",
        corpus,
        "--out",
        tmp_path / "two" / "m.pt",
        "--epochs",
        "1",
        "--progress",
        "jsonl",
        *TINY,
    )
    # Only rank 0 reports and writes.
    assert [e["event"] for e in two].count("start") == 1
    assert next(e for e in two if e["event"] == "start")["world_size"] == 2
    assert [p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".pt"] == ["m.pt"]
    loss_one = next(e for e in one if e["event"] == "epoch")["heldout_loss"]
    loss_two = next(e for e in two if e["event"] == "epoch")["heldout_loss"]
    assert loss_two == pytest.approx(loss_one, rel=0.02)
    bundle = load_bundle(tmp_path / "two" / "m.pt")
    assert bundle.net.config.compose == "mean" and bundle.net.spelling.max() > 0


def test_resume_with_a_different_number_of_processes(corpus, tmp_path):
    out = tmp_path / "m.pt"
    run_model(2, "train", "--corpus", corpus, "--out", out, "--epochs", "1", "--progress", "jsonl", *TINY)
    events = run_model(
        1, "train", "--corpus", corpus, "--out", out, "--epochs", "2", "--resume", "--progress", "jsonl", *TINY
    )
    assert events[0] == {"event": "resume", "epoch": 1, "path": str(out.with_suffix(".ckpt"))}
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]
    assert load_bundle(out).metrics["epochs"] == 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def test_a_dead_rank_stops_the_others_and_the_checkpoint_survives(corpus, tmp_path):
    out = tmp_path / "m.pt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        model_cmd(
            2,
            "train",
            "--corpus",
            corpus,
            "--out",
            out,
            "--epochs",
            "500",
            "--patience",
            "500",
            "--progress",
            "jsonl",
            *TINY,
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in proc.stdout:
            if '"event": "checkpoint"' in line:
                break
        workers = {_rank_of(pid): pid for pid in _children(proc.pid)}
        assert 1 in workers, workers
        os.kill(workers[1], signal.SIGKILL)
        started = time.monotonic()
        proc.wait(timeout=90)
        assert time.monotonic() - started < 90
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    ckpt = safe_load(out.with_suffix(".ckpt"), "lyrics-checkpoint")
    assert ckpt["epoch"] >= 1
