"""Golden songs: 50 requests whose songs are recorded as hashes, so a change that should not move the songs
(a restructure, a speed-up, a change to the network that old bundles must not feel) is checked to write them
byte for byte.

The bundle is built, not trained: its vocabulary and count models come from the committed sample corpus and its
weights from a fixed generator per parameter name, so it is the same on every machine and does not move when a
new layer is added to the network. Songs are written in float32 (bfloat16 products round differently on CPUs
with and without native support).

When a change *should* move the songs, regenerate the record and say so in the commit:

    python -m tests.model.golden
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import save_bundle
from model.corpus import load_corpus
from model.mixture import SAMPLING_WEIGHTS, Mixture
from model.network import LyricsNet, NetConfig
from model.sample import Sampler, SampleRequest
from model.vocab import Vocab, segment
from tests.helpers import SAMPLE_CORPUS

RECORD = Path(__file__).with_name("golden_songs.json")
BATCH = 10
SEEDS = ["窗外的麻雀", "雨", "", "回忆里的你", "老街", "天空很蓝", "秋天", "你说"]


def golden_requests() -> list[SampleRequest]:
    """Mostly /lyrics' defaults, some with each control moved, so every shaping step is exercised."""
    requests = []
    for i in range(50):
        fields: dict = {"seed": SEEDS[i % len(SEEDS)], "random_seed": 100 + i}
        variant = i % 10
        if variant == 6:
            fields.update(temperature=1.2, top_k=8)
        elif variant == 7:
            fields.update(temperature=0.6, top_p=0.8, rhyme="花")
        elif variant == 8:
            fields.update(temperature=0, length=60)
        elif variant == 9:
            fields.update(rhyme="off", candidates=1, repetition_penalty=1.0, no_copy=False, max_lines=6)
        requests.append(SampleRequest(**fields))
    return requests


def build_bundle(path: Path) -> Path:
    """A bundle with the sample corpus' vocabulary and count models and fixed pseudo-random weights."""
    data = load_corpus(SAMPLE_CORPUS)
    words = segment(data.train)
    vocab = Vocab.build(words, min_count=2)
    net = LyricsNet(NetConfig(vocab_size=len(vocab), hidden=48, embed=24, dropout=0.0, embed_dropout=0.0))
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                rng = np.random.default_rng(zlib.crc32(name.encode()))
                tensor.copy_(torch.from_numpy(rng.uniform(-0.6, 0.6, tuple(tensor.shape)).astype(np.float32)))
    mixture = Mixture(weights={"net": 0.5, "ngram": 0.4, "cache": 0.1}, sampling=dict(SAMPLING_WEIGHTS))
    save_bundle(path, net, vocab.itos, vocab.words_to_ids(words).ids, mixture, {}, [], {}, "0" * 64)
    return path


def song_hashes(sampler: Sampler) -> list[str]:
    """The first 16 hex digits of each golden song's sha256, written in batches of BATCH."""
    requests = golden_requests()
    texts = [s.text for i in range(0, len(requests), BATCH) for s in sampler.generate_many(requests[i : i + BATCH])]
    return [hashlib.sha256(text.encode()).hexdigest()[:16] for text in texts]


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        sampler = Sampler.load(build_bundle(Path(folder) / "golden.pt"), device="cpu", precision="float32")
        RECORD.write_text(json.dumps(song_hashes(sampler), indent=0) + "\n", encoding="utf-8")
    print(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
