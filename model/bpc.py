"""Held-out scoring in bits per character, so models with different tokenisations compare.

The total −log2 probability a model gives the held-out text, token by token, is divided by the
number of held-out characters. A character the vocabulary lacks is ``<unk>`` and additionally pays
log2(20,992) for being spelled uniformly over the CJK block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .network import LyricsNet
from .ngram import UNK_SPELLING_BITS
from .vocab import Vocab, segment

LN2 = math.log(2)


@dataclass
class HeldoutSet:
    """Held-out token ids with the training tail that precedes them (context the model may use)."""

    context_ids: list[int]
    ids: list[int]
    chars: int
    unk_chars: int


def make_heldout(
    vocab: Vocab, preceding_ids: list[int], heldout_words: list[str], heldout_text: str, context: int = 200
) -> HeldoutSet:
    """Encode the held-out words and keep the last ``context`` tokens of the text before them as warm-up."""
    encoded = vocab.words_to_ids(heldout_words)
    return HeldoutSet(
        context_ids=preceding_ids[-context:],
        ids=encoded.ids,
        chars=len(heldout_text),
        unk_chars=encoded.ids.count(vocab.unk_id),
    )


def shard(heldout: HeldoutSet, rank: int, world_size: int) -> HeldoutSet:
    """The rank's contiguous share of the held-out tokens, warmed up on the tokens just before it.

    Ranks score their shares in parallel and sum the bits; ``chars`` stays the whole text's count.
    """
    stream = heldout.context_ids + heldout.ids
    n_ctx = len(heldout.context_ids)
    start = n_ctx + len(heldout.ids) * rank // world_size
    stop = n_ctx + len(heldout.ids) * (rank + 1) // world_size
    ids = stream[start:stop]
    return HeldoutSet(
        context_ids=stream[max(0, start - n_ctx) : start], ids=ids, chars=heldout.chars, unk_chars=ids.count(0)
    )


@torch.inference_mode()
def token_log2probs(net: LyricsNet, heldout: HeldoutSet, device: torch.device, chunk: int = 512) -> torch.Tensor:
    """log2 p(token) for every held-out token, state carried through the text (CPU float64)."""
    was_training = net.training
    net.eval()
    stream = torch.tensor(heldout.context_ids + heldout.ids, dtype=torch.long, device=device)
    n_ctx = len(heldout.context_ids)
    out = []
    state = None
    for start in range(0, len(stream) - 1, chunk):
        x = stream[start : start + chunk].unsqueeze(0)
        y = stream[start + 1 : start + 1 + chunk]
        x = x[:, : len(y)]
        logits, state = net(x, state)
        logp = torch.log_softmax(logits[0].float(), dim=-1)
        out.append(logp.gather(1, y.unsqueeze(1)).squeeze(1).double().cpu())
    net.train(was_training)
    # Position i of the joined stream predicts token i+1; keep only held-out targets.
    return torch.cat(out)[n_ctx - 1 :] / LN2


def bits_per_char(log2probs: torch.Tensor, heldout: HeldoutSet) -> float:
    """Turn per-token log2 probabilities into held-out bits per character."""
    return bpc_of(-float(log2probs.sum()), heldout)


def bpc_of(token_bits: float, heldout: HeldoutSet) -> float:
    """Held-out bits per character from the bits the model paid for the held-out tokens.

    Each ``<unk>`` also pays for spelling its character uniformly over the CJK block.
    """
    return (token_bits + heldout.unk_chars * UNK_SPELLING_BITS) / heldout.chars


def dev_and_test(vocab: Vocab, train_ids: list[int], dev_text: str, test_text: str) -> tuple[HeldoutSet, HeldoutSet]:
    """The held-out tail's two halves, each warmed up on the text just before it (test on the end of dev)."""
    dev_words = segment(dev_text)
    dev = make_heldout(vocab, train_ids, dev_words, dev_text)
    test = make_heldout(vocab, train_ids + dev.ids, segment(test_text), test_text)
    return dev, test
