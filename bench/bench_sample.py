"""Sampling speed, batching, reproducibility and copying, all in one run on this machine.

    python bench/bench_sample.py [--bundle models/lyrics.pt] [--corpus ../shared/data/jaychou_lyrics.txt.zip]

1. A model of the original tutorial's size (2×512 RNN, embed 256, a vocabulary of the reference
   corpus' 5,703 jieba word types, random weights): a 300-token song at batch 1 (median), the
   original quadratic method (re-run the whole sequence for every new token) on the same model,
   32 songs of 300 tokens in one batch, and the same 32 one at a time.
2. The trained bundle (network + n-gram + cache mixture): ms per token at batch 1 and 32.
3. Reproducibility: 100 mixed requests, alone and inside batches of 25: how many songs match.
4. Copying: 50 songs from 10 seeds at temperature 0.8, with and without no_copy, the share of lines
   found verbatim in training; and what no_copy costs (speed; held-out lines it forbids).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.checkpoint import save_bundle  # noqa: E402
from model.corpus import load_corpus  # noqa: E402
from model.mixture import Mixture  # noqa: E402
from model.network import LyricsNet, NetConfig  # noqa: E402
from model.sample import COPY_BLOCK_CHARS, Sampler, SampleRequest, _native_cpu_kernels  # noqa: E402
from model.vocab import UNK, Vocab, segment  # noqa: E402

SEEDS = ["窗外的麻雀", "天空", "回忆", "我的爱", "秋天", "雨下", "街角", "你的微笑", "琴声", "夜晚"]


def timed(fn, repeat: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def original_size_sampler(corpus: str, folder: Path) -> Sampler:
    """The tutorial's network shape over the tutorial's vocabulary (every jieba word type), random weights."""
    data = load_corpus(corpus)
    words = segment(data.text)
    vocab = [UNK] + sorted(set(words))
    torch.manual_seed(0)
    net = LyricsNet(
        NetConfig(vocab_size=len(vocab), cell="rnn", layers=2, hidden=512, embed=256, dropout=0.5, tie_weights=False)
    )
    ids = Vocab(vocab).words_to_ids(words).ids
    path = folder / "original.pt"
    save_bundle(path, net, vocab, ids, Mixture(weights={"net": 1.0}), {}, [], {}, data.sha256)
    return Sampler.load(path, device="cpu")


@torch.inference_mode()
def quadratic(sampler: Sampler, seed: str, length: int) -> str:
    """The original method: for every new token, run the network over the whole sequence from a zero state."""
    ids = [sampler.newline_id] + sampler.vocab.encode(seed).ids
    gen = torch.Generator().manual_seed(0)
    for _ in range(length):
        logits, _ = sampler.net(torch.tensor([ids]))
        probs = torch.softmax(logits[0, -1] / 0.8, dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    return sampler.vocab.decode(ids)


def network_floor(sampler: Sampler, batch: int, steps: int = 300) -> float:
    """Seconds for the network's steps alone (no sampling at all): what the hardware allows."""
    x = torch.full((batch, 1), sampler.newline_id)

    def run() -> None:
        with torch.inference_mode(), _native_cpu_kernels():
            state = None
            for _ in range(steps):
                _, state = sampler.net(x, state)

    run()
    return statistics.median(timed(run, repeat=3))


def section_speed(sampler: Sampler) -> None:
    print(f"\n## Original-size model: 2x512 RNN, vocabulary {len(sampler.vocab)}, random weights, 300 tokens")
    one = SampleRequest(seed="窗外的麻雀", temperature=0.8, length=300, random_seed=1)
    sampler.generate(one)  # warm-up
    fast = timed(lambda: sampler.generate(one), repeat=7)
    slow = timed(lambda: quadratic(sampler, "窗外的麻雀", 300), repeat=1)
    print(f"batch 1, carried state : median {statistics.median(fast) * 1000:.0f} ms per 300-token song")
    print(
        f"original quadratic     : {slow[0] * 1000:.0f} ms per song -> {slow[0] / statistics.median(fast):.0f}x faster"
    )
    print(
        f"network steps alone    : {network_floor(sampler, 1) * 1000:.0f} ms per 300 steps at batch 1, "
        f"{network_floor(sampler, 32):.2f} s at batch 32 (the floor: no sampling at all)"
    )
    batch = [SampleRequest(seed=SEEDS[i % 10], temperature=0.8, length=300, random_seed=i) for i in range(32)]
    together = statistics.median(timed(lambda: sampler.generate_many(batch), repeat=3))
    alone = sum(timed(lambda: [sampler.generate(r) for r in batch], repeat=1))
    print(f"32 songs in one batch  : {together:.2f} s in all ({together / 32 * 1000:.0f} ms per song)")
    print(
        f"32 songs one at a time : {alone:.2f} s in all ({alone / 32 * 1000:.0f} ms per song); "
        f"batching buys {alone / together:.1f}x"
    )


def section_bundle(sampler: Sampler) -> None:
    weights = ", ".join(f"{k} {v:.2f}" for k, v in sampler.mixture.weights.items())
    print(
        f"\n## Trained bundle: {sampler.net.config.cell} {sampler.net.config.layers}x{sampler.net.config.hidden}, "
        f"vocabulary {len(sampler.vocab)}, mixture {weights}"
    )
    for size in (1, 32):
        batch = [SampleRequest(seed=SEEDS[i % 10], temperature=0.8, length=300, random_seed=i) for i in range(size)]
        sampler.generate_many(batch[:1])
        seconds = statistics.median(timed(lambda: sampler.generate_many(batch), repeat=3))
        print(
            f"batch {size:2d}: {seconds * 1000 / 300:.2f} ms per step, {seconds * 1000 / 300 / size:.3f} ms per token "
            f"({seconds:.2f} s for {size} x 300 tokens)"
        )
    net_only = Sampler(sampler.bundle, sampler.device)
    net_only.weights = {"net": 1.0}
    net_only.ngram = None
    net_only.mixture = Mixture(weights={"net": 1.0})
    batch = [SampleRequest(seed=SEEDS[i % 10], temperature=0.8, length=300, random_seed=i) for i in range(32)]
    seconds = statistics.median(timed(lambda: net_only.generate_many(batch), repeat=3))
    print(f"batch 32, network alone (no count models): {seconds * 1000 / 300:.2f} ms per step")


def section_reproducibility(sampler: Sampler) -> None:
    requests = [
        SampleRequest(
            seed=SEEDS[i % 10],
            temperature=[0.5, 0.8, 1.2, 0.0][i % 4],
            length=100 + i % 50,
            random_seed=i,
            top_k=[0, 20][i % 2],
            top_p=[1.0, 0.9, 1.0][i % 3],
            repetition_penalty=[1.0, 1.2][i % 2],
            no_copy=bool(i % 2),
        )
        for i in range(100)
    ]
    alone = [sampler.generate(r).text for r in requests]
    batched = [s.text for start in range(0, 100, 25) for s in sampler.generate_many(requests[start : start + 25])]
    same = sum(a == b for a, b in zip(alone, batched))
    print(f"\n## Reproducibility: {same} of 100 mixed requests give the same song alone and in batches of 25")


def section_copying(sampler: Sampler, corpus: str) -> None:
    print("\n## Copying: 50 songs (10 seeds x 5), temperature 0.8, 150 tokens")
    for no_copy in (False, True):
        requests = [
            SampleRequest(seed=SEEDS[i % 10], temperature=0.8, length=150, random_seed=i, no_copy=no_copy)
            for i in range(50)
        ]
        start = time.perf_counter()
        samples = sampler.generate_many(requests)
        seconds = time.perf_counter() - start
        counted = sum(len([ln for ln in s.text.split("\n") if len(ln) >= 4]) for s in samples)
        copied = sum(len(s.copied_lines) for s in samples)
        long_copies = sum(len([ln for ln in s.copied_lines if len(ln) >= COPY_BLOCK_CHARS]) for s in samples)
        print(
            f"no_copy={no_copy!s:5s}: {copied}/{counted} lines verbatim from training ({copied / counted:.0%}), "
            f"{long_copies} of them 6+ characters; {seconds:.2f} s for the 50"
        )
    heldout = load_corpus(corpus).heldout.split("\n")
    long_lines = [ln for ln in heldout if len(ln) >= COPY_BLOCK_CHARS]
    forbidden = [ln for ln in long_lines if ln in sampler.guard.blocked]
    print(
        f"cost in held-out terms: no_copy forbids {len(forbidden)}/{len(long_lines)} "
        f"({len(forbidden) / len(long_lines):.0%}) of the held-out lines of 6+ characters, "
        f"because they are verbatim training lines (the corpus repeats itself across songs)"
    )
    example = sampler.generate(
        SampleRequest(seed="窗外的麻雀", temperature=0.8, length=120, random_seed=7, no_copy=True)
    )
    print("\nexample (窗外的麻雀, temperature 0.8, random seed 7, no_copy):\n" + example.text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=str(REPO / "models" / "lyrics.pt"))
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as folder:
        section_speed(original_size_sampler(args.corpus, Path(folder)))
    if not Path(args.bundle).exists():
        print(f"\n(no bundle at {args.bundle}: train one with `python -m model train --corpus {args.corpus}`)")
        return
    trained = Sampler.load(args.bundle, device="cpu")
    section_bundle(trained)
    section_reproducibility(trained)
    section_copying(trained, args.corpus)


if __name__ == "__main__":
    main()
