"""What a song is about: its seed's words, and the words the corpus sings around them.

Planning-based poetry generation (Wang et al., 2016) expands a poem's title into keywords and gives each line
one. Here the expansion comes from the corpus itself: the words that share a window of lines with the seed's
words more often than chance (pointwise mutual information over windows of ``WINDOW_LINES`` lines). A seed word
the vocabulary spells with its characters (麻雀 → 麻 雀) is found in the windows as text all the same; one the
corpus never uses falls back to its characters, one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .rhyme import is_han
from .vocab import NEWLINE, Vocab, segment

WINDOW_LINES = 8  # about a verse: words that share one are about the same thing
WINDOW_STRIDE = 4
MIN_TOGETHER = 2  # windows a related word must share with the seed word: one could be chance
# Times a word must be sung in the training text to carry a theme. A word sung once or twice belongs to its
# line (and, the windows overlapping, shares two windows with any word near it): pulled in, it copies its line.
MIN_USES = 3
# Context-distribution smoothing (Levy, Goldberg & Dagan 2015): PMI with the words' frequencies raised to this
# power, so a word seen in two windows, both with the seed, does not outrank the words that carry a theme.
SMOOTHING = 0.75


def is_content(word: str) -> bool:
    """A word that says what a line is about: 2+ characters, all Chinese (窗外, 麻雀; not 我, 的, oh)."""
    return len(word) >= 2 and all(is_han(ch) for ch in word)


def content_words(text: str) -> list[str]:
    """The text's content words (jieba's), each once, in order of first use."""
    return list(dict.fromkeys(w for w in segment(text.replace(NEWLINE, " ")) if is_content(w)))


@dataclass(frozen=True)
class Related:
    """A word related to the seed, and how strongly (smoothed PMI, in nats)."""

    token: int
    score: float


class ThemeFinder:
    """The training text cut into overlapping windows of lines, and which content tokens each window holds."""

    def __init__(self, train_ids: Sequence[int], vocab: Vocab):
        self.vocab = vocab
        newline = vocab.stoi.get(NEWLINE, vocab.unk_id)
        lines: list[list[int]] = [[]]
        for token in train_ids:
            if token == newline:
                lines.append([])
            else:
                lines[-1].append(token)
        lines = [line for line in lines if line]
        uses = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=len(vocab))
        self.content = np.array(
            [i for i, t in enumerate(vocab.itos) if is_content(t) and uses[i] >= MIN_USES], dtype=np.int64
        )
        column = np.full(len(vocab), -1, dtype=np.int64)
        column[self.content] = np.arange(len(self.content))
        starts = range(0, max(len(lines) - WINDOW_LINES, 0) + 1, WINDOW_STRIDE)
        self.texts: list[str] = []
        self.holds = np.zeros((len(starts), len(self.content)), dtype=np.float32)  # window × content word
        for w, start in enumerate(starts):
            window = lines[start : start + WINDOW_LINES]
            self.texts.append(NEWLINE.join(vocab.decode(line) for line in window))
            columns = column[np.fromiter((t for line in window for t in line), dtype=np.int64)]
            self.holds[w, columns[columns >= 0]] = 1.0
        # How often each content word is seen (in windows), smoothed; the denominator of every score.
        with np.errstate(divide="ignore"):  # a word no window holds: -inf, never scored (see _scores)
            self.expected = np.log(self.holds.sum(0) ** SMOOTHING / max(len(self.texts), 1) ** SMOOTHING)

    def windows_holding(self, word: str) -> np.ndarray:
        """The indices of the windows that hold ``word`` as text (whatever the tokens that spell it)."""
        return np.array([w for w, text in enumerate(self.texts) if word in text], dtype=np.int64)

    def related(self, words: Iterable[str], count: int) -> list[Related]:
        """The ``count`` content tokens most related to any of ``words``, best first; the words themselves and
        tokens inside them (or containing them) excluded."""
        words = [w for w in words if w]
        if not words or not len(self.texts):
            return []
        best = np.full(len(self.content), -math.inf)
        for word in words:
            queries = [word]
            if len(self.windows_holding(word)) < MIN_TOGETHER:
                queries = [ch for ch in dict.fromkeys(word) if is_han(ch)]  # a word the corpus never sings
            for query in queries:
                best = np.maximum(best, self._scores(query))
        for i, token in enumerate(self.content):
            text = self.vocab.itos[token]
            if any(text in w or w in text for w in words):
                best[i] = -math.inf
        order = np.argsort(-best, kind="stable")[:count]
        return [Related(int(self.content[i]), float(best[i])) for i in order if np.isfinite(best[i])]

    def _scores(self, query: str) -> np.ndarray:
        """Smoothed PMI of every content token with ``query`` over the windows; -inf where they rarely meet."""
        holding = self.windows_holding(query)
        n = len(holding)
        if n < 1:
            return np.full(len(self.content), -math.inf)
        together = self.holds[holding].sum(0)  # a few windows hold any one word: rows, not a product
        with np.errstate(divide="ignore", invalid="ignore"):  # words no window holds: NaN, dropped below
            scores = np.log(together / n) - self.expected
        scores[(together < min(MIN_TOGETHER, n)) | (scores <= 0)] = -math.inf  # related: more than chance
        return scores


# ---------------------------------------------------------------------------------------------
# one song's theme, as pulls on the next token (log-probability units)

SEED_PULL = 2.0  # the seed's own words, on every line after the first
THEME_PULL = 1.0  # the related words
ECHO_PULL = 1.0  # the content words the song has already sung: a theme is words coming back in new lines
KEYWORD_PULL = 2.0  # the line's keyword (model.plan), until the line has it
SPELL_PULL = 4.0  # the next token of a theme word the line has begun to spell (麻 → 雀)


class SongTheme:
    """What one song is about, as a pull on every token of the vocabulary, renewed line by line.

    The seed's words and their related words are pulled towards on every line, the song's own content words
    (what it has sung) a little, and each line's keyword until the line has it. A word the current line already
    holds gets no pull: a theme is words coming back in new lines, not twice in one. A word the vocabulary
    spells in several tokens (麻 雀) is pulled by its first token, then its next one once begun.
    """

    def __init__(self, vocab: Vocab, content: np.ndarray, seed_words: Sequence[str], related: Sequence[str]):
        self.vocab = vocab
        self.content = content  # bool per token: a content word
        self.seed_words = list(seed_words)
        self.related = list(related)
        self.words: dict[int, float] = {}  # one-token theme words and their pulls
        self.spellings: list[tuple[tuple[int, ...], float]] = []  # several-token ones
        for words, pull in ((self.related, THEME_PULL), (self.seed_words, SEED_PULL)):
            for word in words:
                ids = self._ids(word)
                if len(ids) == 1:
                    self.words[ids[0]] = max(self.words.get(ids[0], 0.0), pull)
                elif ids:
                    self.spellings.append((ids, pull))
        self.line = np.zeros(len(vocab), dtype=np.float32)
        self.keyword, self.keyword_ids = "", ()

    def _ids(self, word: str) -> tuple[int, ...]:
        ids = tuple(self.vocab.encode(word).ids)
        return () if self.vocab.unk_id in ids else ids

    def begin_line(self, sung: Sequence[Sequence[int]], keyword: str) -> None:
        """The pulls for the next line, given the lines sung so far and the line's keyword ("" for none)."""
        self.line[:] = 0.0
        tokens = np.fromiter((t for line in sung for t in line), dtype=np.int64)
        self.line[tokens[self.content[tokens]]] = ECHO_PULL
        for token, pull in self.words.items():
            self.line[token] = max(self.line[token], pull)
        self.keyword, self.keyword_ids = keyword, self._ids(keyword) if keyword else ()
        if self.keyword_ids:
            self.line[self.keyword_ids[0]] += KEYWORD_PULL

    def row(self, out: np.ndarray, tokens: Sequence[int], line: str) -> None:
        """Fill ``out`` (one row of the batch's pulls) for a candidate whose current line so far is ``tokens``
        (``line`` as text, the seed's part included)."""
        out[:] = self.line
        if tokens:
            used = np.asarray(tokens)
            out[used] = np.minimum(out[used], 0.0)
        spellings = self.spellings
        if len(self.keyword_ids) > 1 and self.keyword not in line:
            spellings = [*spellings, (self.keyword_ids, 0.0)]  # its first token already carries KEYWORD_PULL
        for ids, pull in spellings:
            for done in range(min(len(ids) - 1, len(tokens)), 0, -1):
                if tuple(tokens[-done:]) == ids[:done]:
                    out[ids[done]] += SPELL_PULL
                    break
            else:
                out[ids[0]] += pull
