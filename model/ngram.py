"""N-gram count models: the bar a neural model must clear, and partners to mix with it.

``NgramModel`` uses interpolated absolute discounting: each order's relative frequency, less a
fixed discount per seen continuation, is mixed with the next lower order using the mass the
discount freed, down to a uniform floor. The same class serves three roles: the character trigram
bar, a token n-gram counted on the training stream, and a *cache* counted on the song so far.
Distributions are built with NumPy because they are small vectors where NumPy's per-call overhead
is a fraction of torch's, and sampling builds one per song per step.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

import numpy as np

# A character never seen in training is charged as if spelled uniformly over the CJK Unified
# Ideographs block, so models with different vocabularies pay the same for it.
CJK_BLOCK = 20_992
UNK_SPELLING_BITS = math.log2(CJK_BLOCK)


class NgramModel:
    """Counts of symbols after every context of up to ``order - 1`` symbols, growable one symbol at a time."""

    def __init__(self, order: int, vocab_size: int, discount: float = 0.75):
        if order < 1:
            raise ValueError("order must be at least 1")
        if not 0 < discount < 1:
            raise ValueError("discount must be in (0, 1)")
        self.order = order
        self.vocab_size = vocab_size
        self.discount = discount
        self.counts: dict[tuple, Counter] = {}
        self.totals: Counter[tuple] = Counter()
        self._arrays: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._memo: Callable[[tuple], np.ndarray] | None = None

    @classmethod
    def fit(cls, sequence: Sequence[Hashable], order: int, vocab_size: int, discount: float = 0.75) -> NgramModel:
        """Count every n-gram of ``sequence``."""
        model = cls(order, vocab_size, discount)
        for i in range(len(sequence)):
            model.add(sequence, i)
        return model

    def add(self, sequence: Sequence[Hashable], i: int) -> None:
        """Count ``sequence[i]`` after each of its contexts (used to grow a cache as a song is written)."""
        if self._memo is not None:
            raise RuntimeError("this n-gram model is frozen: its distributions are memoised")
        sym = sequence[i]
        for n in range(min(self.order, i + 1)):
            context = tuple(sequence[i - n : i])
            self.counts.setdefault(context, Counter())[sym] += 1
            self.totals[context] += 1
            self._arrays.pop(context, None)

    def _contexts(self, history: Sequence[Hashable]) -> list[tuple]:
        """The contexts of each order for the next symbol, shortest first."""
        history = tuple(history[max(0, len(history) - (self.order - 1)) :]) if self.order > 1 else ()
        return [history[len(history) - n :] if n else () for n in range(min(self.order, len(history) + 1))]

    def prob(self, history: Sequence[Hashable], sym: Hashable) -> float:
        """p(sym | history), interpolated down to a uniform floor."""
        p = 1.0 / self.vocab_size
        for context in self._contexts(history):
            followers = self.counts.get(context)
            if followers:
                total = self.totals[context]
                p = (max(followers.get(sym, 0) - self.discount, 0.0) + self.discount * len(followers) * p) / total
        return p

    def _array(self, context: tuple) -> tuple[np.ndarray, np.ndarray]:
        cached = self._arrays.get(context)
        if cached is None:
            followers = self.counts[context]
            ids = np.fromiter(followers.keys(), dtype=np.int64, count=len(followers))
            vals = np.fromiter(followers.values(), dtype=np.float64, count=len(followers))
            cached = self._arrays[context] = (ids, np.maximum(vals - self.discount, 0.0))
        return cached

    def freeze(self, memo: int = 2048, dtype: type = np.float64) -> NgramModel:
        """Stop counting and remember up to ``memo`` recent distributions (songs share many contexts), as ``dtype``."""
        compute = self._distribution_of if dtype is np.float64 else (lambda h: self._distribution_of(h).astype(dtype))
        self._memo = functools.lru_cache(maxsize=memo)(compute)
        return self

    def distribution(self, history: Sequence[int]) -> np.ndarray:
        """The whole next-symbol distribution (sums to 1) over integer symbols. Do not modify it."""
        key = tuple(history[max(0, len(history) - (self.order - 1)) :]) if self.order > 1 else ()
        return (self._memo or self._distribution_of)(key)

    def _distribution_of(self, history: tuple) -> np.ndarray:
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for context in self._contexts(history):
            if context in self.counts:
                ids, discounted = self._array(context)
                total = self.totals[context]
                p *= self.discount * len(ids) / total
                p[ids] += discounted / total
        return p


def em_weights(probs: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood weights of a linear mixture, given each component's probability per token."""
    k = probs.shape[0]
    weights = np.full(k, 1.0 / k)
    for _ in range(iterations):
        joint = weights[:, None] * probs
        weights = (joint / joint.sum(0, keepdims=True)).mean(1)
    return weights


def char_ngram_bpc(train: str, heldout: str, order: int = 3) -> float:
    """Held-out bits per character of an interpolated character n-gram counted on ``train``: the bar.

    Jelinek-Mercer interpolation of the relative frequencies of each order and a uniform floor,
    with the weights fit by EM on the held-out text itself: that only makes the bar harder to clear.
    Characters seen once in training are counted as ``<unk>`` so that ``<unk>`` gets a probability;
    a held-out ``<unk>`` pays p(<unk>) plus the uniform spelling cost, as the neural models do.
    """
    unk = "\0unk"
    counts = Counter(train)

    def symbols(text: str) -> list[str]:
        return [ch if counts[ch] > 1 else unk for ch in text]

    train_syms = symbols(train)
    held_syms = symbols(heldout)
    vocab_size = len(set(train_syms))
    levels = [Counter(tuple(train_syms[i - n : i + 1]) for i in range(n, len(train_syms))) for n in range(order)]
    contexts = [Counter(tuple(train_syms[i - n : i]) for i in range(n, len(train_syms))) for n in range(order)]
    # Held-out text continues the training text, so its first characters see the end of training.
    stream = train_syms[-(order - 1) :] + held_syms if order > 1 else held_syms
    start = len(stream) - len(held_syms)
    probs = np.empty((order + 1, len(held_syms)))
    probs[order] = 1.0 / vocab_size
    for j, i in enumerate(range(start, len(stream))):
        for n in range(order):
            seen = contexts[n][tuple(stream[i - n : i])]
            probs[n, j] = levels[n][tuple(stream[i - n : i + 1])] / seen if seen else 0.0
    mixed = (em_weights(probs)[:, None] * probs).sum(0)
    bits = -np.log2(mixed).sum() + held_syms.count(unk) * UNK_SPELLING_BITS
    return float(bits / len(heldout))
