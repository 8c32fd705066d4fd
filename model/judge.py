"""The song-quality report: what a listener notices, measured against the corpus itself.

``python -m model judge BUNDLE --corpus PATH`` writes songs from a fixed list of seeds at the bot's
default settings and measures them in four columns: the corpus itself, the corpus' lines shuffled (what
no coherence looks like), a plain word Markov chain built from the corpus, and the bundle's songs.

Line by line:

- **rhyme**: share of adjacent line pairs whose last characters share a rhyme group (model.rhyme); the
  target counts each distinct pair of two different lines once per song, so a repeated chorus earns none;
- **line shape**: mean and spread of characters per line;
- **fluency**, three views, because each alone can be fooled: a logistic regression on character
  1–3-grams trying to tell song lines from distinct corpus lines (ROC AUC by 5-fold cross-validation;
  0.5 means it cannot), the same test on jieba part-of-speech sequences (the shape of a line whatever
  its words), and word-likeness, the best-path log2 probability per character under jieba's general
  dictionary (generic lines full of 我的/你的 score *above* the corpus, gibberish below). A song's lines
  count once each, so a chorus sung twice is not judged twice;
- **novelty**: share of lines found verbatim in the corpus, and share of the songs' character 8-grams
  that never occur in it;
- **loops**: share of songs with degenerate repetition (a line 5+ times, or a span 5+ times in a row).

As songs (issue 18; a *content word* is a jieba word of 2+ Han characters, and "occurs" means as a substring):

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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_bundle
from .corpus import Corpus
from .rhyme import line_rhyme
from .sample import Sampler, SampleRequest
from .vocab import NEWLINE, segment

# Seeds the report writes from. Outside checks use others; tune nothing on these alone.
SEEDS = (
    "窗外的麻雀",
    "天青色",
    "故事的小黄花",
    "我的爱",
    "雨下整夜",
    "那年夏天",
    "一个人",
    "城市的灯火",
    "你说",
    "如果",
    "回忆",
    "星空",
    "旧时光",
    "风吹过",
    "离开",
    "咖啡",
    "月光",
    "海边",
    "老街",
    "梦里",
)
FLUENCY_MIN_CHARS = 4  # shorter lines ("oh", "啦啦") say nothing about fluency
NOVEL_NGRAM = 8
LOOP_REPEATS = 5
CORPUS_STRETCH = 20  # lines per stretch when the corpus is read as songs (rhyme, chorus, loops)
THEME_WINDOW = 8  # lines per window for seed returns and coherence
FLUENCY_WINDOW = 4  # lines per window for window fluency
WINDOW_JOIN = "/"
WINDOW_NGRAM = 4  # longest character n-gram of the window test
WINDOW_DRAWS = 5  # balanced samples of the corpus' windows the window test averages over
PATCH_NGRAM = 5
SHUFFLE_SEED = 0
_LOOP = re.compile(r"(.{2,}?)\1{" + str(LOOP_REPEATS - 1) + ",}", re.DOTALL)
_CONTENT_WORD = re.compile(r"[\u4e00-\u9fff]{2,}")

# What each column of the report is (the table's legend and the JSON's "columns").
COLUMNS = {
    "corpus": "the corpus: 20-line stretches as songs, 8-line windows for seed returns and coherence, "
    "its held-out lines against its training part for novelty",
    "shuffled": f"the corpus' lines shuffled (seed {SHUFFLE_SEED}), read the same way: lines not meant together",
    "markov": "a word Markov chain built on the corpus (state size 2), as many songs as the bundle's",
    "bundle": "the bundle's songs at /lyrics' defaults",
}


@dataclass
class Figures:
    """One column of the report. NaN where a measure means nothing for the column (the table shows "–")."""

    songs: int
    lines: int
    rhyme: float  # adjacent line pairs that rhyme
    rhyme_distinct: float  # the same, each distinct pair of two different lines counted once per song
    line_mean: float
    line_std: float
    char_auc: float  # 0.5: indistinguishable from corpus lines
    syntax_auc: float
    wordlike: float  # log2 p per character under jieba's dictionary
    verbatim: float  # lines found verbatim in the corpus
    novel_ngrams: float  # character 8-grams absent from the corpus
    loops: float  # songs with degenerate repetition
    seed_returns: float  # songs whose first line's content word comes back within their first 8 lines
    coherence: float  # coherence_raw scaled: corpus lines in order 1, shuffled 0
    coherence_raw: float  # share of a line's content words found in another line of its 8-line window
    window_auc: float  # 0.5: 4-line windows indistinguishable from the corpus'
    chorus: float  # songs with a repeated block of 2+ different lines
    patchwork: float  # characters inside some corpus character 5-gram

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Targets:
    """What issues 14 and 18 ask of the songs at /lyrics' defaults, relative to the corpus where they say so.

    Each target is named after the figure it bounds, so the table marks that row.
    """

    rhyme_distinct: float = 0.50
    line_tolerance: float = 0.10
    char_auc: float = 0.65
    syntax_auc: float = 0.62
    wordlike_tolerance: float = 0.2
    verbatim: float = 0.05
    novel_ngrams: float = 0.90
    loops: float = 0.03
    # Bands, not floors: the easy way up (echoing the song's own words) overshoots the corpus.
    seed_returns: tuple[float, float] = (0.15, 0.30)
    coherence: tuple[float, float] = (0.7, 1.3)
    window_auc: float = 0.65
    chorus: float = 0.40
    patchwork: float = 0.30

    def check(self, songs: Figures, corpus: Figures) -> dict[str, bool]:
        """Which targets the songs meet (a NaN figure meets none)."""
        return {
            "rhyme_distinct": songs.rhyme_distinct >= self.rhyme_distinct,
            "line_mean": abs(songs.line_mean / corpus.line_mean - 1) <= self.line_tolerance,
            "char_auc": songs.char_auc <= self.char_auc,
            "syntax_auc": songs.syntax_auc <= self.syntax_auc,
            "wordlike": abs(songs.wordlike - corpus.wordlike) <= self.wordlike_tolerance,
            "verbatim": songs.verbatim <= self.verbatim,
            "novel_ngrams": songs.novel_ngrams >= self.novel_ngrams,
            "loops": songs.loops <= self.loops,
            "seed_returns": self.seed_returns[0] <= songs.seed_returns <= self.seed_returns[1],
            "coherence": self.coherence[0] <= songs.coherence <= self.coherence[1],
            "window_auc": songs.window_auc <= self.window_auc,
            "chorus": songs.chorus >= self.chorus,
            "patchwork": songs.patchwork <= self.patchwork,
        }


# ---------------------------------------------------------------------------------------------
# the line-level measures, each on plain lists of lines


def lines_of(text: str) -> list[str]:
    """A song's non-empty lines, stripped."""
    return [line.strip() for line in text.split(NEWLINE) if line.strip()]


def line_chars(line: str) -> int:
    """Characters in a line, the pauses (spaces) included: they are part of how a line looks and is sung."""
    return len(line)


def rhyme_rates(songs: Iterable[Sequence[str]]) -> tuple[float, float]:
    """(all adjacent pairs, distinct adjacent pairs of different lines) whose last characters rhyme.

    The second counts each pair (a, b) with a != b once per song, so a chorus sung twice rhymes once.
    """
    pairs = distinct = rhymed = rhymed_distinct = 0
    for lines in songs:
        seen: set[tuple[str, str]] = set()
        for a, b in itertools.pairwise(lines):
            group = line_rhyme(a)
            hit = group is not None and group == line_rhyme(b)
            pairs += 1
            rhymed += hit
            if a != b and (a, b) not in seen:
                seen.add((a, b))
                distinct += 1
                rhymed_distinct += hit
    return rhymed / max(pairs, 1), rhymed_distinct / max(distinct, 1)


def _jieba_dt():
    from .vocab import _jieba

    return _jieba()


def wordlike(lines: Sequence[str]) -> float:
    """Mean over distinct lines of the best-path log2 probability per character under jieba's general dictionary.

    Pauses (spaces) are left out, as jieba's dictionary has no word for them; a repeated line counts once.
    """
    tokenizer = _jieba_dt()
    scores = []
    for line in dict.fromkeys(lines):
        text = line.replace(" ", "")
        if not text:
            continue
        route: dict[int, tuple[float, int]] = {}
        tokenizer.calc(text, tokenizer.get_DAG(text), route)
        scores.append(route[0][0] / math.log(2) / len(text))
    return float(np.mean(scores)) if scores else math.nan


def pos_tags(line: str) -> str:
    """The line's jieba part-of-speech tags, space-separated: its shape, whatever its words."""
    from jieba import posseg

    _jieba_dt()
    return " ".join(pair.flag for pair in posseg.lcut(line))


def classifier_auc(
    corpus_docs: Sequence[str], song_docs: Sequence[str], *, analyzer: str, ngram_range: tuple[int, int] = (1, 3)
) -> float:
    """ROC AUC of a logistic regression on n-grams telling song documents from corpus ones (5-fold CV).

    0.5 means the songs cannot be told apart; 1.0 means every one can. ``analyzer`` is "char" for
    characters or "word" for space-separated symbols (part-of-speech tags); ``ngram_range`` is the
    (shortest, longest) n-gram counted. NaN with fewer than 10 documents on either side.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    if len(song_docs) < 10 or len(corpus_docs) < 10:
        return math.nan
    options = {"token_pattern": r"\S+"} if analyzer == "word" else {}
    vectorizer = CountVectorizer(analyzer=analyzer, ngram_range=ngram_range, lowercase=False, **options)
    # newton-cg fits the same L2-regularised model as the default lbfgs, to a tighter optimum, 4-5x faster on these
    # sparse n-gram counts (AUCs within 0.001 of lbfgs' on the reference corpus).
    pipeline = make_pipeline(vectorizer, LogisticRegression(solver="newton-cg", max_iter=2000))
    docs = list(corpus_docs) + list(song_docs)
    labels = [0] * len(corpus_docs) + [1] * len(song_docs)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(pipeline, docs, labels, cv=folds, scoring="roc_auc")))


def char_ngrams(lines: Iterable[str], n: int = NOVEL_NGRAM) -> list[str]:
    """Every character n-gram inside a line (none crosses a line break)."""
    return [line[i : i + n] for line in lines for i in range(len(line) - n + 1)]


def has_loop(lines: Sequence[str]) -> bool:
    """A line sung 5+ times, or a span of 2+ characters 5+ times in a row: stuck, not song form."""
    if lines and Counter(lines).most_common(1)[0][1] >= LOOP_REPEATS:
        return True
    return _LOOP.search(NEWLINE.join(lines)) is not None


def distinct_lines(songs: Iterable[Sequence[str]]) -> list[str]:
    """Each song's distinct lines, in order: a chorus sung twice counts once."""
    return [line for lines in songs for line in dict.fromkeys(lines)]


# ---------------------------------------------------------------------------------------------
# the song-level measures (issue 18)


def windows(lines: Sequence[str], size: int, min_last: int | None = None) -> list[list[str]]:
    """Consecutive non-overlapping windows of ``size`` lines; a last, shorter one is kept if it has ``min_last``+
    lines (by default only full windows are kept)."""
    least = size if min_last is None else min_last
    return [list(lines[i : i + size]) for i in range(0, len(lines), size) if len(lines[i : i + size]) >= least]


@functools.lru_cache(maxsize=1 << 16)
def content_words(line: str) -> tuple[str, ...]:
    """The line's jieba words of 2+ Han characters, in order (repeats kept): what a line is about."""
    return tuple(word for word in _jieba_dt().lcut(line) if _CONTENT_WORD.fullmatch(word))


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
    that way and 0.58 balanced, where the issue's outside check measured 0.56.
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


# ---------------------------------------------------------------------------------------------
# the columns


@dataclass
class Reference:
    """What the corpus offers every measure, computed once per report."""

    lines: list[str]  # all corpus lines, in order
    line_set: set[str]
    fluency_lines: list[str]  # distinct lines of FLUENCY_MIN_CHARS+ characters
    fluency_tags: list[str]
    ngrams: set[str]  # character 8-grams (novelty)
    patch_ngrams: set[str]  # character 5-grams (patchwork)
    window_docs: list[str]  # 4-line windows of 4 different lines (window fluency)
    shuffled: list[str]  # the same lines shuffled with a fixed seed
    corpus_coherence: float  # raw coherence of the lines in order, 8-line windows: scaled to 1
    shuffled_coherence: float  # the same of the shuffled lines: scaled to 0

    @classmethod
    def build(cls, text: str) -> Reference:
        lines = lines_of(text)
        distinct = list(dict.fromkeys(line for line in lines if line_chars(line) >= FLUENCY_MIN_CHARS))
        shuffled = lines[:]
        random.Random(SHUFFLE_SEED).shuffle(shuffled)
        return cls(
            lines=lines,
            line_set=set(lines),
            fluency_lines=distinct,
            fluency_tags=[pos_tags(line) for line in distinct],
            ngrams=set(char_ngrams(lines)),
            patch_ngrams=set(char_ngrams(lines, PATCH_NGRAM)),
            window_docs=corpus_window_docs(lines),
            shuffled=shuffled,
            corpus_coherence=coherence_raw(windows(lines, THEME_WINDOW, 2)),
            shuffled_coherence=coherence_raw(windows(shuffled, THEME_WINDOW, 2)),
        )

    def coherence(self, raw: float) -> float:
        """``raw`` scaled: this corpus' lines in order score 1, shuffled 0."""
        return scale_coherence(raw, self.corpus_coherence, self.shuffled_coherence)


def figures(songs: Sequence[str], reference: Reference) -> Figures:
    """Every measure for a list of songs (each a text of lines) against the corpus."""
    song_lines = [lines_of(song) for song in songs]
    flat = [line for lines in song_lines for line in lines]
    rhyme, rhyme_distinct = rhyme_rates(song_lines)
    lengths = [line_chars(line) for line in flat] or [0]
    # The corpus side of the line tests holds distinct lines; so does the songs' side, song by song.
    fluent = [line for line in distinct_lines(song_lines) if line_chars(line) >= FLUENCY_MIN_CHARS]
    ngrams = char_ngrams(flat)
    coherence = coherence_raw(w for lines in song_lines for w in windows(lines, THEME_WINDOW, 2))
    song_windows = [doc for lines in song_lines for doc in window_docs(lines)]
    return Figures(
        songs=len(songs),
        lines=len(flat),
        rhyme=rhyme,
        rhyme_distinct=rhyme_distinct,
        line_mean=float(np.mean(lengths)),
        line_std=float(np.std(lengths)),
        char_auc=classifier_auc(reference.fluency_lines, fluent, analyzer="char"),
        syntax_auc=classifier_auc(reference.fluency_tags, [pos_tags(line) for line in fluent], analyzer="word"),
        wordlike=wordlike(flat),
        verbatim=sum(line in reference.line_set for line in fluent) / max(len(fluent), 1),
        novel_ngrams=sum(g not in reference.ngrams for g in ngrams) / max(len(ngrams), 1),
        loops=sum(has_loop(lines) for lines in song_lines) / max(len(song_lines), 1),
        seed_returns=share(seed_returns(lines) for lines in song_lines),
        coherence=reference.coherence(coherence),
        coherence_raw=coherence,
        window_auc=window_auc(reference.window_docs, song_windows),
        chorus=share(has_chorus(lines) for lines in song_lines),
        patchwork=patchwork(flat, reference.patch_ngrams),
    )


def stream_figures(lines: Sequence[str], reference: Reference) -> Figures:
    """A stream of lines read the way the corpus is: 20-line stretches as songs (rhyme, chorus, loops) and
    8-line windows, each one's first line as the seed (seed returns, coherence). The measures that set its
    lines against the corpus' are NaN here."""
    stretches = windows(lines, CORPUS_STRETCH, 1)
    eights = windows(lines, THEME_WINDOW, 2)
    rhyme, rhyme_distinct = rhyme_rates(stretches)
    lengths = [line_chars(line) for line in lines]
    coherence = coherence_raw(eights)
    return Figures(
        songs=len(stretches),
        lines=len(lines),
        rhyme=rhyme,
        rhyme_distinct=rhyme_distinct,
        line_mean=float(np.mean(lengths)),
        line_std=float(np.std(lengths)),
        char_auc=math.nan,
        syntax_auc=math.nan,
        wordlike=math.nan,
        verbatim=math.nan,
        novel_ngrams=math.nan,
        loops=share(has_loop(s) for s in stretches),
        seed_returns=share(seed_returns(w) for w in eights),
        coherence=reference.coherence(coherence),
        coherence_raw=coherence,
        window_auc=math.nan,
        chorus=share(has_chorus(s) for s in stretches),
        patchwork=math.nan,
    )


def corpus_figures(train: str, heldout: str, reference: Reference) -> Figures:
    """The corpus measured as if it were songs (``stream_figures``), and its held-out tail's lines against its
    training part for novelty (new Jay Chou lines). Fluency is 0.5 by definition."""
    train_lines = set(lines_of(train))
    heldout_lines = lines_of(heldout)
    new = [line for line in heldout_lines if line_chars(line) >= FLUENCY_MIN_CHARS]
    train_ngrams = set(char_ngrams(train_lines))
    new_ngrams = char_ngrams(heldout_lines)
    return replace(
        stream_figures(reference.lines, reference),
        char_auc=0.5,
        syntax_auc=0.5,
        wordlike=wordlike(reference.lines),
        verbatim=sum(line in train_lines for line in new) / max(len(new), 1),
        novel_ngrams=sum(g not in train_ngrams for g in new_ngrams) / max(len(new_ngrams), 1),
        window_auc=0.5,
        # Lines new to the training part: how much of a new Jay Chou line is made of old 5-character pieces.
        patchwork=patchwork(
            [line for line in heldout_lines if line not in train_lines], set(char_ngrams(train_lines, PATCH_NGRAM))
        ),
    )


def shuffled_figures(reference: Reference) -> Figures:
    """The corpus' lines shuffled, read like the corpus: what songs whose lines do not belong together score.

    Its lines are the corpus', so the measures that set lines against the corpus' are NaN, the window test
    included: cross-validated, it would meet each shuffled line in the corpus' windows of the training folds
    and score far below 0.5 (the Markov chain's copied lines pull its figure down the same way).
    """
    return stream_figures(reference.shuffled, reference)


# ---------------------------------------------------------------------------------------------
# the baseline: a plain word Markov chain, the kind markov-discord serves


class WordMarkov:
    """A state-size-2 Markov chain over jieba tokens (line breaks included), backing off when a state is unseen."""

    def __init__(self, text: str, state_size: int = 2):
        self.state_size = state_size
        self.tokens = segment(text)
        self.next: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for i in range(len(self.tokens)):
            for n in range(state_size + 1):
                if i - n >= 0:
                    self.next[tuple(self.tokens[i - n : i])].append(self.tokens[i])

    def generate(self, seed: str, length: int, rng: np.random.Generator) -> str:
        history = [NEWLINE, *segment(seed.strip())]
        out: list[str] = []
        for _ in range(length):
            for n in range(self.state_size, -1, -1):
                followers = self.next.get(tuple(history[len(history) - n :]) if n else ())
                if followers:
                    break
            token = followers[int(rng.integers(len(followers)))]
            if token == NEWLINE and history[-1] == NEWLINE:
                continue  # no empty lines
            history.append(token)
            out.append(token)
        return seed.strip() + "".join(out)


# ---------------------------------------------------------------------------------------------
# the report


def song_requests(n: int, seeds: Sequence[str] = SEEDS) -> list[tuple[str, int]]:
    """(seed, random seed) for n songs, cycling through the seeds."""
    return [(seeds[i % len(seeds)], 1_000 + i) for i in range(n)]


def markov_songs(text: str, n: int, length: int, seeds: Sequence[str] = SEEDS) -> list[str]:
    """n songs of ``length`` tokens from a word Markov chain built on ``text``."""
    chain = WordMarkov(text)
    return [chain.generate(seed, length, np.random.default_rng(rs)) for seed, rs in song_requests(n, seeds)]


def sampler_songs(sampler: Sampler, n: int, seeds: Sequence[str] = SEEDS, batch: int = 32) -> list[str]:
    """n songs at /lyrics' defaults (SampleRequest's), written in batches."""
    requests = [SampleRequest(seed=seed, random_seed=rs) for seed, rs in song_requests(n, seeds)]
    return [s.text for i in range(0, n, batch) for s in sampler.generate_many(requests[i : i + batch])]


@dataclass
class Report:
    """The report's four columns (``COLUMNS`` says what each is), and which targets the bundle's songs meet."""

    corpus: Figures
    shuffled: Figures
    markov: Figures
    bundle: Figures
    targets: dict[str, bool]
    examples: list[str]

    def columns(self) -> dict[str, Figures]:
        """The columns by name, in the table's order."""
        return {"corpus": self.corpus, "shuffled": self.shuffled, "markov": self.markov, "bundle": self.bundle}

    def to_dict(self) -> dict:
        """The report as plain JSON: a measure that means nothing for a column is null, not NaN."""
        return {
            **{name: _nan_to_none(column.to_dict()) for name, column in self.columns().items()},
            "columns": COLUMNS,
            "targets": self.targets,
            "examples": self.examples,
        }

    def table(self) -> str:
        return format_report(self.columns(), self.targets)


def _nan_to_none(values: dict[str, float]) -> dict[str, float | None]:
    return {key: None if isinstance(v, float) and math.isnan(v) else v for key, v in values.items()}


def judge(sampler: Sampler, corpus: Corpus, songs: int = 60, seeds: Sequence[str] = SEEDS) -> Report:
    """Write ``songs`` songs with the sampler and measure them, the corpus, its shuffled lines and a Markov chain."""
    reference = Reference.build(corpus.text)
    written = sampler_songs(sampler, songs, seeds)
    bundle = figures(written, reference)
    corpus_column = corpus_figures(corpus.train, corpus.heldout, reference)
    length = SampleRequest().length
    markov = figures(markov_songs(corpus.text, songs, length, seeds), reference)
    targets = Targets().check(bundle, corpus_column)
    return Report(corpus_column, shuffled_figures(reference), markov, bundle, targets, written[:2])


def judge_bundle(path: str | Path, corpus: Corpus, songs: int) -> dict[str, float]:
    """The song-quality report's figures for the bundle at ``path``, as its metrics keep them (``summary``)."""
    sampler = Sampler(load_bundle(path), torch.device("cpu"))
    return summary(judge(sampler, corpus, songs))


def _percent(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}%}"


def _fixed(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}f}"


TABLE_ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("rhyme", "adjacent lines that rhyme", _percent(0)),
    ("rhyme_distinct", "  … distinct pairs of different lines", _percent(0)),
    ("line_mean", "characters per line", _fixed(1)),
    ("line_std", "  … spread (std)", _fixed(1)),
    ("char_auc", "fluency: characters (AUC)", _fixed(2)),
    ("syntax_auc", "fluency: syntax (AUC)", _fixed(2)),
    ("wordlike", "word-likeness (log2 p/char)", _fixed(2)),
    ("verbatim", "lines copied verbatim", _percent(1)),
    ("novel_ngrams", "novel character 8-grams", _percent(1)),
    ("loops", "songs that loop", _percent(1)),
    ("seed_returns", "first line's word returns (8 lines)", _percent(0)),
    ("coherence", "coherence (corpus 1, shuffled 0)", _fixed(2)),
    ("coherence_raw", "  … raw: words shared in 8 lines", _fixed(2)),
    ("window_auc", "fluency: 4-line windows (AUC)", _fixed(2)),
    ("chorus", "songs with a chorus", _percent(0)),
    ("patchwork", "characters in corpus 5-grams", _percent(1)),
]


def format_report(columns: dict[str, Figures], targets: dict[str, bool] | None = None) -> str:
    """A plain-text table: one row per measure, one column per source ("–" where a measure means nothing for it),
    ✓/✗ against the targets, and a legend of the columns."""
    names = list(columns)
    width = max(len(label) for _, label, _ in TABLE_ROWS) + 2
    out = ["".ljust(width) + "".join(name.rjust(10) for name in names)]
    for key, label, fmt in TABLE_ROWS:
        values = (getattr(columns[name], key) for name in names)
        cells = "".join(("–" if math.isnan(v) else fmt(v)).rjust(10) for v in values)
        mark = ""
        if targets is not None and key in targets:
            mark = "  ✓" if targets[key] else "  ✗"
        out.append(label.ljust(width) + cells + mark)
    counts = ", ".join(f"{name} {fig.songs} songs/{fig.lines} lines" for name, fig in columns.items())
    out.append(f"({counts})")
    out.extend(f"{name}: {COLUMNS[name]}" for name in names if name in COLUMNS)
    return "\n".join(out)


def summary(report: Report) -> dict[str, float]:
    """The figures a bundle's metrics keep: its songs', with the corpus' for comparison (plain floats).

    The shuffled lines and the Markov chain are references for reading the report, not for a bundle's record.
    """
    keep = {f"{k}": round(float(v), 4) for k, v in report.bundle.to_dict().items()}
    keep.update({f"corpus_{k}": round(float(v), 4) for k, v in report.corpus.to_dict().items() if k != "songs"})
    keep["targets_met"] = float(sum(report.targets.values()))
    keep["targets"] = float(len(report.targets))
    return keep
