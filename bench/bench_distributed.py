"""Training throughput on 1 and 2 processes (torchrun, gloo on CPU), same global batch.

    python bench/bench_distributed.py [--corpus ../shared/data/jaychou_lyrics.txt.zip] [--epochs 2]

Each run trains the default network for a few epochs and reads the JSON-lines progress: time per
epoch and training tokens per second. With N processes each gets 1/N of the batch rows and
``2 // N`` torch threads, so every run uses the machine's two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(nproc: int, corpus: str, epochs: int, threads: int, folder: Path) -> tuple[list[dict], dict]:
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
    cmd = [
        *launcher,
        "train",
        "--corpus",
        corpus,
        "--out",
        str(folder / f"p{nproc}.pt"),
        "--epochs",
        str(epochs),
        "--patience",
        str(epochs),
        "--progress",
        "jsonl",
        "--threads",
        str(threads),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise SystemExit(f"{nproc} processes failed:\n{result.stderr[-2000:]}")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    start = next(e for e in events if e["event"] == "start")
    return [e for e in events if e["event"] == "epoch"], start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    print(f"{args.cores} cores; corpus {args.corpus}; {args.epochs} epochs per run")
    with tempfile.TemporaryDirectory() as folder:
        for nproc in (1, 2):
            threads = max(1, args.cores // nproc)
            epochs, start = run(nproc, args.corpus, args.epochs, threads, Path(folder))
            seconds = sum(e["seconds"] for e in epochs) / len(epochs)
            print(
                f"{nproc} process(es) x {threads} thread(s): {seconds:.1f} s per epoch "
                f"(incl. held-out scoring), {start['train_tokens'] / seconds:,.0f} training tokens/s, "
                f"held-out bpc after {len(epochs)} epochs {epochs[-1]['bpc']:.3f}"
            )


if __name__ == "__main__":
    main()
