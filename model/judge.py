"""The song-quality report: what a listener notices, measured against the corpus itself.

``python -m model judge BUNDLE --corpus PATH`` writes songs from a fixed list of seeds at the bot's
default settings and measures them in four columns: the corpus itself, the corpus' lines shuffled (what
no coherence looks like), a plain word Markov chain built from the corpus, and the bundle's songs.

The line-level measures are ``judge_lines``' (rhyme, line shape, fluency, novelty, loops), the song-level
ones ``judge_songs``' (the seed returning, coherence, window fluency, chorus, patchwork); this module writes
the songs, puts the measures together into the report's columns and checks the targets.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_bundle
from .corpus import Corpus
from .judge_lines import (
    FLUENCY_MIN_CHARS,
    char_ngrams,
    classifier_auc,
    distinct_lines,
    has_loop,
    line_chars,
    lines_of,
    pos_tags,
    rhyme_rates,
    wordlike,
)
from .judge_songs import (
    PATCH_NGRAM,
    SHUFFLE_SEED,
    THEME_WINDOW,
    coherence_raw,
    corpus_window_docs,
    has_chorus,
    patchwork,
    scale_coherence,
    seed_returns,
    share,
    window_auc,
    window_docs,
    windows,
)
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
CORPUS_STRETCH = 20  # lines per stretch when the corpus is read as songs (rhyme, chorus, loops)

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
    """What the songs must reach at /lyrics' defaults, some figures relative to the corpus'.

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
