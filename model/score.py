"""``python -m model evaluate``: a bundle's held-out figures on a corpus, as the bundle itself would serve.

The corpus is split as in training (its ``heldout_fraction``) and encoded with the bundle's own
vocabulary; the served mixture is scored with the bundle's own weights, next to the network alone and
the character-trigram bar.
"""

from __future__ import annotations

from typing import Any

import torch

from .checkpoint import Bundle
from .corpus import load_corpus
from .evaluate import make_heldout
from .mixture import component_probs, mixed_bpc
from .ngram import char_ngram_bpc
from .vocab import Vocab, segment


def evaluate_bundle(bundle: Bundle, corpus_path: str, device: torch.device) -> dict[str, Any]:
    """Score a bundle on a corpus' held-out tail, split as in training, with the bundle's own weights."""
    fraction = float(bundle.train_config.get("heldout_fraction", 0.1))
    data = load_corpus(corpus_path, fraction)
    vocab = Vocab(bundle.vocab)
    train_ids = vocab.words_to_ids(segment(data.train)).ids
    heldout = make_heldout(vocab, train_ids, segment(data.heldout), data.heldout)
    mixture = bundle.mixture
    probs = component_probs(mixture, bundle.net, len(vocab), bundle.train_ids, heldout, device)
    return {
        "bpc": mixed_bpc(probs, mixture.weights, heldout),
        "net_bpc": mixed_bpc(probs, {"net": 1.0}, heldout),
        "trigram_bpc": char_ngram_bpc(data.train, data.heldout),
        "chars": heldout.chars,
        "unk_chars": heldout.unk_chars,
        "tokens": len(heldout.ids),
        "weights": mixture.weights,
        "same_corpus": data.sha256 == bundle.corpus_sha256,
    }
