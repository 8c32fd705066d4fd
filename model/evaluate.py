"""``python -m model evaluate``: a bundle's held-out figures on a corpus, as the bundle itself would serve.

The corpus is split as in training (its ``heldout_fraction``) and encoded with the bundle's own
vocabulary; the served mixture is scored with the bundle's own weights, next to the network alone and
the character-trigram bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .bpc import dev_and_test
from .checkpoint import Bundle
from .corpus import load_corpus
from .mixture import component_probs, mixed_bpc, static_weights
from .ngram import char_ngram_bpc
from .vocab import Vocab, segment


def evaluate_bundle(
    bundle: Bundle, corpus_path: str | Path, device: torch.device, heldout_fraction: float | None = None
) -> dict[str, Any]:
    """Score a bundle on the test half of a corpus' held-out tail, split as in training, with its own weights.

    ``bpc`` is the served mixture, song cache included; ``static_bpc`` the same without the cache (what
    the model knows rather than what the held-out text repeats of itself); ``net_bpc`` the network alone.
    The tail is the bundle's own ``heldout_fraction`` of the corpus unless `heldout_fraction` says
    otherwise (to score it on another model's held-out text). ``corpus_sha256`` names the text scored on.
    """
    if heldout_fraction is None:
        heldout_fraction = bundle.heldout_fraction
    data = load_corpus(corpus_path, heldout_fraction)
    vocab = Vocab(bundle.vocab)
    train_ids = vocab.words_to_ids(segment(data.train)).ids
    _, test = dev_and_test(vocab, train_ids, data.dev, data.test)
    mixture = bundle.mixture
    probs = component_probs(mixture, bundle.net, len(vocab), bundle.train_ids, test, device)
    return {
        "bpc": mixed_bpc(probs, mixture.weights, test),
        "static_bpc": mixed_bpc(probs, static_weights(mixture.weights), test),
        "net_bpc": mixed_bpc(probs, {"net": 1.0}, test),
        "trigram_bpc": char_ngram_bpc(data.train + data.dev, data.test),
        "chars": test.chars,
        "unk_chars": test.unk_chars,
        "tokens": len(test.ids),
        "weights": mixture.weights,
        "same_corpus": data.sha256 == bundle.corpus_sha256,
        "corpus_sha256": data.sha256,
        "heldout_fraction": heldout_fraction,
    }
