"""Training benchmark: the default configuration against the original tutorial's, same wall clock, same scoring.

    python bench/bench_train.py [--corpus ../shared/data/jaychou_lyrics.txt.zip] [--threads 2]

1. Trains the default ``python -m model train`` configuration (early-stopped) and reports its wall
   time, held-out bpc of the network alone, of each mixture part, and of the served bundle, next
   to the character n-gram bars.
2. Trains the original configuration (every stride-1 window of 100 tokens as a sample, batches of
   64, 2x512 RNN, embed 256, dropout 0.5, Adam 1e-3, clip 0.5, hidden state reset per batch) for
   the same wall-clock budget, scoring it on the held-out tail every tenth of the budget (scoring
   time not counted) and keeping its best score. Both use our vocabulary, so the held-out
   accounting is identical.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import distributed  # noqa: E402
from model.checkpoint import load_bundle  # noqa: E402
from model.config import TrainConfig  # noqa: E402
from model.events import EpochEvent, Event  # noqa: E402
from model.mixture import Mixture  # noqa: E402
from model.network import LyricsNet, NetConfig  # noqa: E402
from model.ngram import char_ngram_bpc  # noqa: E402
from model.train import evaluate_net, prepare, train  # noqa: E402


def run_default(corpus: str, out: Path) -> tuple[float, Mixture]:
    epochs = []

    def on_event(event: Event) -> None:
        if isinstance(event, EpochEvent):
            epochs.append(event)
            print(
                f"  epoch {event.epoch:2d}: held-out bpc {event.bpc:.3f} (train loss "
                f"{event.train_loss:.3f}), {event.elapsed:.0f}s",
                flush=True,
            )

    start = time.perf_counter()
    train(TrainConfig(corpus=corpus, out=str(out)), on_event=on_event)
    seconds = time.perf_counter() - start
    return seconds, load_bundle(out).mixture


def run_original(corpus: str, budget: float) -> float:
    """The tutorial's recipe on our data pipeline; returns the best held-out bpc it reached in ``budget`` seconds."""
    torch.manual_seed(0)
    random.seed(0)
    data = prepare(TrainConfig(corpus=corpus))
    net = LyricsNet(
        NetConfig(
            vocab_size=len(data.vocab),
            cell="rnn",
            layers=2,
            hidden=512,
            embed=256,
            dropout=0.5,
            embed_dropout=0.0,
            tie_weights=False,
        )
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    ids = torch.tensor(data.train_ids)
    starts = list(range(len(ids) - 101))
    context = distributed.Context()
    best, trained, checks = math.inf, 0.0, 0
    while trained < budget:
        random.shuffle(starts)
        for b in range(0, len(starts), 64):
            tick = time.perf_counter()
            batch = torch.tensor(starts[b : b + 64])
            offsets = batch.unsqueeze(1) + torch.arange(101)
            x, y = ids[offsets[:, :-1]], ids[offsets[:, 1:]]
            net.train()
            logits, _ = net(x)  # a zero state for every batch, as the tutorial does
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            optimizer.step()
            trained += time.perf_counter() - tick
            if trained >= budget * (checks + 1) / 10 or trained >= budget:
                checks += 1
                _, bpc = evaluate_net(net, data.heldout, torch.device("cpu"), context)
                best = min(best, bpc)
                print(
                    f"  {trained:5.0f}s trained ({b // 64 + 1} batches this pass): held-out bpc {bpc:.3f}", flush=True
                )
            if trained >= budget:
                break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--out", help="keep the default bundle here (e.g. models/lyrics.pt)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; corpus {args.corpus}")
    data = prepare(TrainConfig(corpus=args.corpus))
    from model.corpus import load_corpus

    split = load_corpus(args.corpus)
    bars = {n: char_ngram_bpc(split.train, split.heldout, n) for n in (1, 2, 3)}
    print(
        f"held-out: {data.heldout.chars} characters, {len(data.heldout.ids)} tokens, {data.heldout.unk_chars} "
        f"unknown; vocabulary {len(data.vocab)}"
    )
    print("character n-gram bars: " + ", ".join(f"{n}-gram {v:.3f}" for n, v in bars.items()))

    print("\n## Default configuration")
    with tempfile.TemporaryDirectory() as folder:
        seconds, mixture = run_default(args.corpus, Path(args.out) if args.out else Path(folder) / "default.pt")
    print(f"wall time {seconds:.0f} s")
    for part, bpc in mixture.parts.items():
        print(f"  {part:22s} {bpc:.3f} bpc")
    print(
        f"served bundle (weights {', '.join(f'{k} {v:.2f}' for k, v in mixture.weights.items())}): "
        f"{mixture.bpc:.3f} bpc"
    )
    if not args.skip_original:
        print(f"\n## Original configuration for the same {seconds:.0f} s")
        best = run_original(args.corpus, seconds)
        print(f"original configuration: best held-out bpc {best:.3f} (network alone; ours {mixture.parts['net']:.3f})")


if __name__ == "__main__":
    main()
