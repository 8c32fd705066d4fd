"""jieba word tokens with a character fallback, and the vocabulary that maps them to ids.

Most word types in a lyrics corpus occur once, so a plain word vocabulary cannot express a fifth of
new text. Words rarer than ``min_count`` are spelled with their characters instead; every character
seen in training keeps an id, and ``<unk>`` stands only for characters never seen.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field

import jieba

UNK = "<unk>"
NEWLINE = "\n"


@functools.cache
def _jieba() -> jieba.Tokenizer:
    """jieba's shared tokenizer, initialised once and quietly (its first use costs 1-2 s)."""
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba.dt


def warm_up() -> None:
    """Load jieba's dictionary now rather than on the first request."""
    _jieba()


def segment(text: str) -> list[str]:
    """Split text into jieba words, keeping each line break as its own token."""
    tokenizer = _jieba()
    words: list[str] = []
    lines = text.split(NEWLINE)
    for i, line in enumerate(lines):
        words.extend(w for w in tokenizer.lcut(line) if w)
        if i < len(lines) - 1:
            words.append(NEWLINE)
    return words


@dataclass
class Encoded:
    """Token ids for a text, and the parts of it the vocabulary could not express."""

    ids: list[int]
    unknown: list[str] = field(default_factory=list)


class Vocab:
    """Maps tokens (words, characters, line breaks, ``<unk>``) to ids and back."""

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != UNK:
            raise ValueError("a vocabulary starts with <unk>")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary lists each token once")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    unk_id = 0

    @classmethod
    def build(cls, words: list[str], min_count: int = 2) -> Vocab:
        """Keep words seen at least ``min_count`` times, plus every character seen at all.

        Ids are ordered by frequency so the list reads well and rare ids cluster at the end.
        """
        counts = Counter(words)
        kept: Counter[str] = Counter()
        for word, n in counts.items():
            if len(word) == 1 or n >= min_count:
                kept[word] += n
            else:
                for ch in word:
                    kept[ch] += n
        # Characters of kept words get ids too, so any text made of seen characters stays expressible.
        for word in counts:
            for ch in word:
                kept.setdefault(ch, 0)
        ordered = sorted(kept, key=lambda t: (-kept[t], t))
        return cls([UNK] + [t for t in ordered if t != UNK])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def words_to_ids(self, words: list[str]) -> Encoded:
        """Encode pre-segmented words, falling back to characters, reporting what stays unknown."""
        ids: list[int] = []
        unknown: list[str] = []
        for word in words:
            token_id = self.stoi.get(word)
            if token_id is not None:
                ids.append(token_id)
                continue
            for ch in word:
                token_id = self.stoi.get(ch)
                if token_id is None:
                    ids.append(self.unk_id)
                    if ch not in unknown:
                        unknown.append(ch)
                else:
                    ids.append(token_id)
        return Encoded(ids, unknown)

    def encode(self, text: str) -> Encoded:
        """Segment and encode text the same way training text is encoded."""
        return self.words_to_ids(segment(text))

    def decode(self, ids: list[int]) -> str:
        """Join tokens back into text; tokens carry no separators, so none are added."""
        return "".join(self.itos[i] for i in ids)
