"""Sampling speed, batching, reproducibility and copying, all in one run on this machine.

    python bench/bench_sample.py [--bundle models/lyrics.pt] [--corpus data/jaychou_lyrics.txt.zip] [--threads N]
                                 [--precision auto|float32|bfloat16]

1. The product: the trained bundle at /lyrics' defaults (SampleRequest()): one 150-token song at
   batch 1 and 32 concurrent songs in one call (the latency targets: 0.5 s and 3 s), beside the
   network's own steps for the same work (the floor: no sampling at all) and the original quadratic
   method (re-run the whole sequence for every new token) on the same network.
2. A model of the original tutorial's size (2×512 RNN, embed 256, a vocabulary of the reference
   corpus' 5,703 jieba word types, random weights), sampled plainly (one candidate per line, no
   rhyme): a 300-token song at batch 1, the quadratic method, 32 songs in one batch and one at a time.
3. Reproducibility: 100 mixed requests, alone and inside batches of 25: how many songs match.
4. Copying: 50 default songs from 10 seeds with and without no_copy: lines verbatim from training,
   character 8-grams found in training.
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
from model.novelty import SPAN_CHARS  # noqa: E402
from model.sample import Sampler, SampleRequest  # noqa: E402
from model.stepper import PRECISIONS  # noqa: E402
from model.vocab import UNK, Vocab, segment  # noqa: E402

SEEDS = ["窗外的麻雀", "天空", "回忆", "我的爱", "秋天", "雨下", "街角", "你的微笑", "琴声", "夜晚"]


def plain(**fields) -> SampleRequest:
    """Token-by-token sampling as the tutorial did it: one candidate per line, no rhyme, no penalties, no guard."""
    return SampleRequest(**{"candidates": 1, "rhyme": "off", "repetition_penalty": 1.0, "no_copy": False, **fields})


def timed(fn, repeat: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def original_size_sampler(corpus: str, folder: Path, precision: str) -> Sampler:
    """The tutorial's network shape over the tutorial's vocabulary (every jieba word type), random weights."""
    data = load_corpus(corpus)
    words = segment(data.text)
    vocab = [UNK, *sorted(set(words))]
    torch.manual_seed(0)
    net = LyricsNet(
        NetConfig(vocab_size=len(vocab), cell="rnn", layers=2, hidden=512, embed=256, dropout=0.5, tie_weights=False)
    )
    ids = Vocab(vocab).words_to_ids(words).ids
    path = folder / "original.pt"
    save_bundle(path, net, vocab, ids, Mixture(weights={"net": 1.0}), {}, [], {}, data.sha256)
    return Sampler.load(path, device="cpu", precision=precision)


@torch.inference_mode()
def quadratic(sampler: Sampler, seed: str, length: int) -> str:
    """The original method: for every new token, run the network over the whole sequence from a zero state."""
    ids = [sampler.newline_id, *sampler.vocab.encode(seed).ids]
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
        state = None
        for _ in range(steps):
            _, state = sampler.step(x, state)

    run()
    return statistics.median(timed(run, repeat=3))


def section_speed(sampler: Sampler) -> None:
    print(f"\n## Original-size model: 2x512 RNN, vocabulary {len(sampler.vocab)}, random weights, 300 tokens")
    one = plain(seed="窗外的麻雀", length=300, random_seed=1)
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
    batch = [plain(seed=SEEDS[i % 10], length=300, random_seed=i) for i in range(32)]
    together = statistics.median(timed(lambda: sampler.generate_many(batch), repeat=3))
    alone = sum(timed(lambda: [sampler.generate(r) for r in batch], repeat=1))
    print(f"32 songs in one batch  : {together:.2f} s in all ({together / 32 * 1000:.0f} ms per song)")
    print(
        f"32 songs one at a time : {alone:.2f} s in all ({alone / 32 * 1000:.0f} ms per song); "
        f"batching buys {alone / together:.1f}x"
    )


class TimedNet:
    """The sampler's network steps, timed, with the rows they step counted (the bench's only instrument)."""

    def __init__(self, step):
        self.net = step
        self.calls: list[tuple[int, int]] = []  # (rows, time steps) per call
        self.seconds = 0.0

    def __call__(self, ids: torch.Tensor, state=None):
        self.calls.append((ids.size(0), ids.size(1)))
        start = time.perf_counter()
        out = self.net(ids, state)
        self.seconds += time.perf_counter() - start
        return out


def section_product(sampler: Sampler) -> None:
    defaults = SampleRequest()
    weights = ", ".join(f"{k} {v:.2f}" for k, v in sampler.weights.items())
    print(
        f"\n## The product: /lyrics' defaults (temperature {defaults.temperature}, {defaults.length} tokens, "
        f"{defaults.candidates} candidates a line, rhyme {defaults.rhyme}, repetition penalty "
        f"{defaults.repetition_penalty}, no_copy {defaults.no_copy})\n"
        f"bundle: {sampler.net.config.cell} {sampler.net.config.layers}x{sampler.net.config.hidden}, vocabulary "
        f"{len(sampler.vocab)}, sampling mixture {weights}, network products in {sampler.step.dtype}"
    )
    timed_net = TimedNet(sampler.step)
    real_net, sampler.step = sampler.step, timed_net
    try:
        sampler.generate(SampleRequest(seed="窗外的麻雀", random_seed=0))  # warm-up
        for size, target in ((1, 0.5), (32, 3.0)):
            batch = [SampleRequest(seed=SEEDS[i % 10], random_seed=i) for i in range(size)]
            runs = []
            for _ in range(5 if size == 1 else 3):
                timed_net.calls.clear()
                timed_net.seconds = 0.0
                runs.append((timed(lambda batch=batch: sampler.generate_many(batch))[0], timed_net.seconds))
            seconds, network = sorted(runs)[len(runs) // 2]
            row_steps = sum(rows for rows, steps in timed_net.calls if steps == 1)
            verdict = "meets" if seconds <= target else "misses"
            print(
                f"{size:2d} song{'s' if size > 1 else ' '} at once: {seconds:.2f} s (target {target:g} s: {verdict}); "
                f"of which the network's {len(timed_net.calls)} calls ({row_steps} row-steps): {network:.2f} s"
            )
    finally:
        sampler.step = real_net
    one = SampleRequest(seed="窗外的麻雀", random_seed=1)
    slow = timed(lambda: quadratic(sampler, one.seed, one.length))[0]
    print(f"the original quadratic method, same network, {one.length} tokens, no mixture: {slow:.2f} s")


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
            rhyme=["auto", "off", "花"][i % 3],
            candidates=[4, 1, 8, 4][i % 4],
        )
        for i in range(100)
    ]
    alone = [sampler.generate(r).text for r in requests]
    batched = [s.text for start in range(0, 100, 25) for s in sampler.generate_many(requests[start : start + 25])]
    same = sum(a == b for a, b in zip(alone, batched, strict=False))
    print(f"\n## Reproducibility: {same} of 100 mixed requests give the same song alone and in batches of 25")


def section_copying(sampler: Sampler, corpus: str) -> None:
    print("\n## Copying: 50 default songs (10 seeds x 5)")
    spans = {line[i : i + SPAN_CHARS] for line in load_corpus(corpus).text.split("\n") for i in range(len(line))}
    for no_copy in (False, True):
        requests = [SampleRequest(seed=SEEDS[i % 10], random_seed=i, no_copy=no_copy) for i in range(50)]
        start = time.perf_counter()
        samples = sampler.generate_many(requests)
        seconds = time.perf_counter() - start
        counted = sum(len([ln for ln in s.text.split("\n") if len(ln) >= 4]) for s in samples)
        copied = sum(len(s.copied_lines) for s in samples)
        grams = [ln[i : i + SPAN_CHARS] for s in samples for ln in s.text.split("\n") for i in range(len(ln) - 7)]
        found = sum(g in spans for g in grams)
        print(
            f"no_copy={no_copy!s:5s}: {copied}/{counted} lines verbatim from training ({copied / counted:.0%}), "
            f"{found}/{len(grams)} character 8-grams found in the corpus ({found / max(len(grams), 1):.1%}); "
            f"{seconds:.2f} s for the 50"
        )
    example = sampler.generate(SampleRequest(seed="窗外的麻雀", random_seed=7))
    print("\nexample (窗外的麻雀, /lyrics' defaults, random seed 7):\n" + example.text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=str(REPO / "models" / "lyrics.pt"))
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "jaychou_lyrics.txt.zip"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="the network's products")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if not Path(args.bundle).exists():
        print(f"\n(no bundle at {args.bundle}: train one with `python -m model train --corpus {args.corpus}`)")
        return
    trained = Sampler.load(args.bundle, device="cpu", precision=args.precision)
    section_product(trained)
    with tempfile.TemporaryDirectory() as folder:
        section_speed(original_size_sampler(args.corpus, Path(folder), args.precision))
    section_reproducibility(trained)
    section_copying(trained, args.corpus)


if __name__ == "__main__":
    main()
