"""The song-quality report's song-level measures: what a song's lines do together (``model.judge``'s columns).

As songs (a *content word* is a jieba word of 2+ Han characters, and "occurs" means as a substring):

- **seed returns**: share of songs where a content word of the first line comes back in a later line
  of the first 8 whose text differs from the first line;
- **coherence**: over the lines of 8-line windows, the share of a line's content words that occur in
  another, different line of its window; scaled so that the corpus' consecutive lines score 1 and its
  shuffled lines 0 (``coherence_raw`` keeps the unscaled share);
- **window fluency**: the character test (1–4-grams) on 4-line windows, lines joined with "/";
- **chorus**: share of songs holding a block of 2+ consecutive lines, not all the same, that comes back
  verbatim later without overlapping itself;
- **patchwork**: share of the songs' characters inside some character 5-gram of a corpus line: lines
  stitched from corpus fragments score high.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from collections.abc import Iterable, Sequence

import numpy as np

from .judge_lines import classifier_auc, jieba_tokenizer

THEME_WINDOW = 8  # lines per window for seed returns and coherence
FLUENCY_WINDOW = 4  # lines per window for window fluency
WINDOW_JOIN = "/"
WINDOW_NGRAM = 4  # longest character n-gram of the window test
WINDOW_DRAWS = 5  # balanced samples of the corpus' windows the window test averages over
PATCH_NGRAM = 5
SHUFFLE_SEED = 0
_CONTENT_WORD = re.compile(r"[\u4e00-\u9fff]{2,}")


def windows(lines: Sequence[str], size: int, min_last: int | None = None) -> list[list[str]]:
    """Consecutive non-overlapping windows of ``size`` lines; a last, shorter one is kept if it has ``min_last``+
    lines (by default only full windows are kept)."""
    least = size if min_last is None else min_last
    return [list(lines[i : i + size]) for i in range(0, len(lines), size) if len(lines[i : i + size]) >= least]


@functools.lru_cache(maxsize=1 << 16)
def content_words(line: str) -> tuple[str, ...]:
    """The line's jieba words of 2+ Han characters, in order (repeats kept): what a line is about."""
    return tuple(word for word in jieba_tokenizer().lcut(line) if _CONTENT_WORD.fullmatch(word))


def seed_returns(lines: Sequence[str]) -> bool:
    """Whether a content word of the first line occurs in a later line, among the first 8, whose text differs."""
    if not lines:
        return False
    first = lines[0]
    later = [line for line in lines[1:THEME_WINDOW] if line != first]
    return any(word in line for word in content_words(first) for line in later)


def coherence_raw(line_windows: Iterable[Sequence[str]]) -> float:
    """Mean over lines with a content word of the share of its content words that occur in another line of its
    window with a different text (a repeated line does not make a theme). NaN if no line has a content word."""
    shares = []
    for window in line_windows:
        for line in window:
            words = content_words(line)
            if words:
                others = [other for other in window if other != line]
                shares.append(sum(any(word in other for other in others) for word in words) / len(words))
    return float(np.mean(shares)) if shares else math.nan


def scale_coherence(raw: float, corpus_raw: float, shuffled_raw: float) -> float:
    """``raw`` on the scale where the corpus' lines in order score 1 and the same lines shuffled score 0."""
    span = corpus_raw - shuffled_raw
    return (raw - shuffled_raw) / span if span and math.isfinite(span) else math.nan


def window_docs(lines: Sequence[str]) -> list[str]:
    """A song's consecutive 4-line windows (full ones only), each as one document, lines joined with "/"."""
    return [WINDOW_JOIN.join(window) for window in windows(lines, FLUENCY_WINDOW)]


def corpus_window_docs(lines: Sequence[str]) -> list[str]:
    """The corpus' consecutive 4-line windows whose lines are all different: real stretches of a song."""
    return [WINDOW_JOIN.join(w) for w in windows(lines, FLUENCY_WINDOW) if len(set(w)) == FLUENCY_WINDOW]


def window_auc(corpus_windows: Sequence[str], song_windows: Sequence[str], draws: int = WINDOW_DRAWS) -> float:
    """The character test on 4-line windows, with n-grams up to 4 characters: seams across lines show.

    The corpus side is a random sample as large as the songs' side (the mean over ``draws`` samples, fixed
    seeds). With all of the corpus' windows, most of which share lines with others (its choruses), the test
    learns to recognise the corpus' own repeated lines rather than how songs read: today's sampler scores 0.68
    that way and 0.58 balanced, where an outside check measured 0.56.
    """
    size = min(len(corpus_windows), len(song_windows))
    scores = [
        classifier_auc(
            random.Random(SHUFFLE_SEED + draw).sample(list(corpus_windows), size),
            song_windows,
            analyzer="char",
            ngram_range=(1, WINDOW_NGRAM),
        )
        for draw in range(draws)
    ]
    return float(np.mean(scores))


def has_chorus(lines: Sequence[str]) -> bool:
    """A block of 2+ consecutive lines, not all the same, that comes back verbatim later without overlapping.

    Such a block holds two adjacent different lines; they come back with it, at the same offset, and the two
    copies of that pair cannot overlap either. So the search for such pairs finds exactly these blocks.
    """
    pairs = list(itertools.pairwise(lines))
    return any(a != b and (a, b) in pairs[i + 2 :] for i, (a, b) in enumerate(pairs))


def patchwork(lines: Iterable[str], ngrams: set[str], n: int = PATCH_NGRAM) -> float:
    """Share of the lines' characters inside some character n-gram (within one line) found in ``ngrams``."""
    covered = total = 0
    for line in lines:
        inside = np.zeros(len(line), dtype=bool)
        for i in range(len(line) - n + 1):
            if line[i : i + n] in ngrams:
                inside[i : i + n] = True
        covered += int(inside.sum())
        total += len(line)
    return covered / total if total else math.nan


def share(flags: Iterable[bool]) -> float:
    """The share of true flags; NaN for none."""
    values = list(flags)
    return sum(values) / len(values) if values else math.nan
