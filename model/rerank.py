"""Choosing the best of a line's candidates: fit to the plan, rhyme, and the shape of a real line.

The sampler writes each line K times in one batched pass; the scorer keeps the one that best fits
what the plan asked (its length, its rhyme) and whose part-of-speech sequence looks like a real line.
The syntax view is a signal the network does not maximise itself: a tag trigram counted on the
training lines, where each token's tag is jieba's dictionary tag for that word. Likelihood alone
is a trap here: the candidate the model likes best is the blandest (我的 我的 我的).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jieba import posseg

from .ngram import NgramModel
from .rhyme import line_rhyme
from .vocab import NEWLINE, Vocab

UNKNOWN_TAG = "x"


@dataclass(frozen=True)
class ScoreWeights:
    """How much each view counts when choosing a line; 0 switches a view off."""

    logp: float = 0.0  # mean log2 p per character under the model
    rhyme: float = 4.0  # the line ends in the planned rhyme group (when the plan asks for one)
    length: float = 3.0  # relative distance from the planned length
    syntax: float = 1.0  # mean log2 p per tag under the corpus' tag trigram


@dataclass
class Candidate:
    """One written line: its text, tokens and the model's log2 probability of them (line break included)."""

    text: str
    tokens: list[int]
    log2p: float


class TagModel:
    """A part-of-speech trigram over training lines, each token tagged with jieba's dictionary tag."""

    def __init__(self, vocab: Vocab, train_ids: list[int]):
        table = posseg.dt.word_tag_tab
        tags = sorted({table.get(t, UNKNOWN_TAG) for t in vocab.itos} | {UNKNOWN_TAG, "<s>", "</s>"})
        self.tag_id = {t: i for i, t in enumerate(tags)}
        self.token_tag = [self.tag_id[table.get(t, UNKNOWN_TAG)] for t in vocab.itos]
        self.bos, self.eos = self.tag_id["<s>"], self.tag_id["</s>"]
        newline = vocab.stoi.get(NEWLINE)
        stream = [self.bos, self.bos]
        for token in train_ids:
            if token == newline:
                stream += [self.eos, self.bos, self.bos]
            else:
                stream.append(self.token_tag[token])
        self.model = NgramModel.fit(stream, 3, len(tags), discount=0.75)

    def score(self, tokens: list[int]) -> float:
        """Mean log2 p per tag of the line's tags (the end of line included)."""
        history = [self.bos, self.bos]
        total = 0.0
        for tag in [self.token_tag[t] for t in tokens] + [self.eos]:
            total += math.log2(self.model.prob(history, tag))
            history.append(tag)
        return total / (len(tokens) + 1)


class LineScorer:
    """Scores candidates for one line of a song; higher is better."""

    def __init__(self, weights: ScoreWeights, tags: TagModel | None):
        self.weights = weights
        self.tags = tags

    def scores(self, candidates: list[Candidate], target: int, rhyme: str | None) -> list[float]:
        w = self.weights
        out = []
        for c in candidates:
            chars = max(len(c.text), 1)
            score = w.logp * c.log2p / chars - w.length * abs(len(c.text) - target) / max(target, 1)
            if rhyme is not None and w.rhyme:
                score += w.rhyme * (line_rhyme(c.text) == rhyme)
            if self.tags is not None and w.syntax:
                score += w.syntax * self.tags.score(c.tokens)
            out.append(score)
        return out

    def best(self, candidates: list[Candidate], target: int, rhyme: str | None) -> int:
        """Index of the best candidate (the first among equals, so the choice is reproducible)."""
        scores = self.scores(candidates, target, rhyme)
        return max(range(len(candidates)), key=lambda i: (scores[i], -i))
