"""Shaping and drawing the next token: an ordered list of small steps over a batch of rows.

The sampler turns the mixture's log-probabilities for every row of the batch into one drawn token per row.
Each step below does one thing, to every row at once, with each row's own parameters; the order is the
``Shaper``'s list, and matters (the top-k ranks what the earlier steps allowed; the rescue sees every block):

    mixture (model.sample) → BlockToken(<unk>) → RepetitionPenalty → ThemePull → RhymePull → LineBreakPull → ForceBreak
    → NoCopy → TopK → RescueDeadRows → draw: greedy choice, DampedTemperature, TopP, inverse-CDF draw

What a step needs of each row is in ``Controls``, filled by the sampler's single walk over the rows: a handful
of small tensor operations per row would cost more than the network's step, so every step is a few batched
operations over the whole batch. Like transformers' ``LogitsProcessorList``, a new knob is a new step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

REPETITION_WINDOW = 32  # tokens, about three lines: the span over which repeats are penalised
# Temperature below 1 sharpens the distribution, which over-produces the commonest words (我, 的, 你) far
# beyond how often the corpus uses them: the generic, bland lines of a cold sampler. So temperature
# scales what the model knows about this context, and leaves this share of the words' plain frequency
# (the unigram) at temperature 1: p ∝ p_model^(1/T) · p_unigram^(FREQUENCY_SHARE · (1 - 1/T)).
FREQUENCY_SHARE = 0.5
# The nucleus "reaches" top_p when its mass is within this relative distance of it: a float32 softmax and sum
# land a few ulps either side of a boundary like 0.5 + 0.3 = 0.8 depending on the CPU's vector kernels, and
# the nucleus must not gain a token on one machine that it lacks on another.
TOP_P_TOLERANCE = 1e-6


@dataclass
class Controls:
    """Each row's parameters for the steps, one entry (or array row) per row of the batch."""

    rows: int
    vocab_size: int
    temperature: np.ndarray = field(init=False)  # 0: greedy
    top_k: np.ndarray = field(init=False)  # 0: off
    top_p: np.ndarray = field(init=False)  # 1: off
    penalty: np.ndarray = field(init=False)  # log of the repetition penalty; 0: off
    # The last REPETITION_WINDOW tokens of each row, padded on the left with a column past the vocabulary.
    recent: np.ndarray = field(init=False)
    line_break: np.ndarray = field(init=False)  # added to the line break's log-probability
    forced: list[int] = field(default_factory=list)  # rows that may only end their line
    blocked: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))  # (row, token) pairs
    stitched: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))  # (row, token): discouraged
    rhyming: dict[str, list[int]] = field(default_factory=dict)  # rhyme group -> rows pulled towards it
    pulls: np.ndarray | None = None  # (rows, vocab) added to the log-probabilities: the songs' themes

    def __post_init__(self) -> None:
        # numpy, filled row by row: torch's item assignment is slow.
        self.temperature = np.zeros(self.rows, dtype=np.float32)
        self.top_k = np.zeros(self.rows, dtype=np.int64)
        self.top_p = np.ones(self.rows, dtype=np.float32)
        self.penalty = np.zeros(self.rows, dtype=np.float32)
        self.recent = np.full((self.rows, REPETITION_WINDOW), self.vocab_size, dtype=np.int64)
        self.line_break = np.zeros(self.rows, dtype=np.float32)

    def pull_rows(self, vocab_size: int) -> np.ndarray:
        """The pulls, allocated (zero) on first use: most batches without a theme need none."""
        if self.pulls is None:
            self.pulls = np.zeros((self.rows, vocab_size), dtype=np.float32)
        return self.pulls

    def block(self, row: int, tokens: tuple[int, ...] | list[int]) -> None:
        """Forbid ``tokens`` to ``row``."""
        self.blocked[0].extend([row] * len(tokens))
        self.blocked[1].extend(tokens)


class Step:
    """One shaping step: changes the log-probabilities (rows, vocab) in place."""

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        raise NotImplementedError


class BlockToken(Step):
    """A token no row may draw (``<unk>``: a song never says "unknown")."""

    def __init__(self, token: int):
        self.token = token

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        logp[:, self.token] = -math.inf


class RepetitionPenalty(Step):
    """CTRL's penalty on probabilities, once per recent use: a word used twice in the window is divided by
    penalty². The line break is exempt, or lines would run on."""

    def __init__(self, exempt: int):
        self.exempt = exempt

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        if not controls.penalty.any():
            return
        vocab_size = logp.size(1)
        uses = torch.zeros(controls.rows, vocab_size + 1, dtype=logp.dtype)
        recent = torch.from_numpy(controls.recent)
        uses.scatter_add_(1, recent, torch.ones(recent.shape, dtype=logp.dtype))
        uses[:, self.exempt] = 0
        logp -= uses[:, :vocab_size] * torch.from_numpy(controls.penalty).unsqueeze(1)


class ThemePull(Step):
    """What each song is about: its theme words, its own words and its line's keyword, favoured (model.sample
    decides how much)."""

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        if controls.pulls is not None:
            logp += torch.from_numpy(controls.pulls)


class RhymePull(Step):
    """Near a rhymed line's planned end, favour the tokens whose last character is in the line's rhyme group."""

    def __init__(self, tokens_by_rhyme: dict[str, torch.Tensor], amount: float):
        self.tokens_by_rhyme = tokens_by_rhyme
        self.amount = amount

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        for group, rows in controls.rhyming.items():
            logp[torch.tensor(rows).unsqueeze(1), self.tokens_by_rhyme[group].unsqueeze(0)] += self.amount


class LineBreakPull(Step):
    """Each row's pull on its line break: towards the planned length and a rhyming last character."""

    def __init__(self, line_break: int):
        self.line_break = line_break

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        logp[:, self.line_break] += torch.from_numpy(controls.line_break)


class ForceBreak(Step):
    """A row whose line has run long enough may only end it (the break keeps its own score)."""

    def __init__(self, line_break: int):
        self.line_break = line_break

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        if not controls.forced:
            return
        index = torch.tensor(controls.forced)
        keep = logp[index, self.line_break].nan_to_num(neginf=0.0)
        logp[index] = -math.inf
        logp[index, self.line_break] = keep


class Unstitch(Step):
    """Discourage the tokens that would sew a corpus fragment (a short span of a training line) into the line,
    so lines read as written rather than stitched; a penalty, not a block: common phrases stay possible."""

    def __init__(self, amount: float):
        self.amount = amount

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        rows, tokens = controls.stitched
        if rows and self.amount:
            logp[torch.tensor(rows), torch.tensor(tokens)] -= self.amount


class NoCopy(Step):
    """The tokens that would copy a training line or span (model.novelty), forbidden row by row."""

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        rows, tokens = controls.blocked
        if rows:
            logp[torch.tensor(rows), torch.tensor(tokens)] = -math.inf


class TopK(Step):
    """Each row keeps its k best tokens: ranked before the temperature's frequency share reorders them."""

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        for r in np.flatnonzero((controls.top_k > 0) & (controls.top_k < logp.size(1))).tolist():
            kth = torch.topk(logp[r], int(controls.top_k[r])).values[-1]
            logp[r].masked_fill_(logp[r] < kth, -math.inf)


class RescueDeadRows(Step):
    """A row whose every token is blocked (possible only with no-copy) ends its line instead."""

    def __init__(self, line_break: int):
        self.line_break = line_break

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        dead = torch.isneginf(logp.amax(1))
        if bool(dead.any()):
            logp[dead, self.line_break] = 0.0


class Shaper:
    """The steps, run in order."""

    def __init__(self, steps: list[Step]):
        self.steps = steps

    def __call__(self, logp: torch.Tensor, controls: Controls) -> None:
        for step in self.steps:
            step(logp, controls)


# ---------------------------------------------------------------------------------------------
# drawing


class DampedTemperature:
    """Temperature on what the model knows: log p / T, plus FREQUENCY_SHARE · (1 - 1/T) of the log unigram, so a
    cold sampler does not over-produce the commonest words. Returns the scaled scores (in place)."""

    def __init__(self, log_unigram: torch.Tensor, share: float = FREQUENCY_SHARE):
        self.log_unigram = log_unigram
        self.share = share

    def __call__(self, logp: torch.Tensor, controls: Controls) -> torch.Tensor:
        inverse = 1 / torch.from_numpy(controls.temperature).clamp_min(1e-3).unsqueeze(1)
        scaled = logp.mul_(inverse)
        if self.share:
            scaled += self.share * (1 - inverse) * self.log_unigram
        return scaled


def top_p(probs: torch.Tensor, controls: Controls) -> None:
    """Each row keeps the smallest set of its most likely tokens whose mass reaches its top_p, within
    TOP_P_TOLERANCE (in place)."""
    for r in np.flatnonzero(controls.top_p < 1).tolist():
        sorted_probs, order = torch.sort(probs[r], descending=True)
        reached = float(controls.top_p[r]) * (1 - TOP_P_TOLERANCE)
        outside = (sorted_probs.cumsum(0) - sorted_probs) >= reached
        probs[r, order[outside]] = 0


class Drawer:
    """Greedy rows take their best token; the others draw from the damped, top-p-filtered distribution.

    Draws are inverse-CDF, each from its row's own generator (``uniforms``), so a song's tokens do not depend
    on what else is in the batch.
    """

    def __init__(self, temperature: DampedTemperature):
        self.temperature = temperature

    def __call__(self, logp: torch.Tensor, controls: Controls, uniforms: list[float]) -> list[int]:
        greedy = torch.from_numpy(controls.temperature == 0)
        # Greedy writing takes the model's choice, not the frequency-damped one.
        best = logp.argmax(1) if bool(greedy.any()) else None
        scaled = self.temperature(logp, controls)
        if bool(greedy.all()):
            return best.tolist()
        probs = torch.softmax(scaled, dim=1)
        top_p(probs, controls)
        cdf = probs.cumsum_(1)
        u = torch.tensor(uniforms, dtype=cdf.dtype)
        chosen = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1).clamp_max(cdf.size(1) - 1)
        if best is not None:
            chosen = torch.where(greedy, best, chosen)
        return chosen.tolist()
