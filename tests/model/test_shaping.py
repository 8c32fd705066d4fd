"""Each shaping step on crafted distributions (model.shaping), and the order they run in."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.shaping import (
    REPETITION_WINDOW,
    BlockToken,
    Controls,
    DampedTemperature,
    Drawer,
    ForceBreak,
    LineBreakPull,
    NoCopy,
    RepetitionPenalty,
    RescueDeadRows,
    RhymePull,
    Shaper,
    ThemePull,
    TopK,
    Unstitch,
    top_p,
)

VOCAB = 6
NEWLINE = 1


def uniform(rows: int = 2) -> torch.Tensor:
    return torch.full((rows, VOCAB), math.log(1 / VOCAB))


def crafted() -> torch.Tensor:
    """Two rows over six tokens with distinct, known log-probabilities."""
    probs = torch.tensor([[0.05, 0.1, 0.4, 0.2, 0.15, 0.1], [0.3, 0.05, 0.05, 0.1, 0.2, 0.3]])
    return probs.log()


def controls(rows: int = 2, **values) -> Controls:
    c = Controls(rows, VOCAB)
    c.temperature[:] = 1.0
    for name, value in values.items():
        setattr(c, name, value)
    return c


def test_block_token_removes_it_from_every_row():
    logp = crafted()
    BlockToken(0)(logp, controls())
    assert torch.isneginf(logp[:, 0]).all()
    assert torch.isfinite(logp[:, 1:]).all()


def test_repetition_penalty_divides_by_the_penalty_once_per_use_and_exempts_the_line_break():
    logp, want = crafted(), crafted()
    recent = np.full((2, REPETITION_WINDOW), VOCAB, dtype=np.int64)  # padding: a column past the vocabulary
    recent[0, -4:] = [3, NEWLINE, 3, NEWLINE]  # token 3 twice, the line break twice
    recent[1, -1:] = [3]
    c = controls(recent=recent, penalty=np.array([math.log(2.0), 0.0], dtype=np.float32))
    RepetitionPenalty(exempt=NEWLINE)(logp, c)
    want[0, 3] -= 2 * math.log(2.0)  # p / 2²
    torch.testing.assert_close(logp, want)  # the line break untouched; row 1 has no penalty


def test_repetition_penalty_does_nothing_when_off():
    logp = crafted()
    recent = np.zeros((2, REPETITION_WINDOW), dtype=np.int64)
    RepetitionPenalty(exempt=NEWLINE)(logp, controls(recent=recent))
    torch.testing.assert_close(logp, crafted())


def test_rhyme_pull_favours_the_group_only_on_the_rows_listed():
    logp = crafted()
    pull = RhymePull({"a": torch.tensor([2, 4]), "i": torch.tensor([5])}, amount=1.5)
    pull(logp, controls(rhyming={"a": [1]}))
    want = crafted()
    want[1, [2, 4]] += 1.5
    torch.testing.assert_close(logp, want)


def test_line_break_pull_adds_each_rows_own_amount():
    logp = crafted()
    LineBreakPull(NEWLINE)(logp, controls(line_break=np.array([2.0, -math.inf], dtype=np.float32)))
    assert logp[0, NEWLINE] == pytest.approx(math.log(0.1) + 2.0)
    assert torch.isneginf(logp[1, NEWLINE])
    torch.testing.assert_close(logp[:, 2:], crafted()[:, 2:])


def test_force_break_leaves_only_the_line_break_with_its_own_score():
    logp = crafted()
    ForceBreak(NEWLINE)(logp, controls(forced=[0]))
    assert logp[0, NEWLINE] == pytest.approx(math.log(0.1))
    assert torch.isneginf(logp[0, [0, 2, 3, 4, 5]]).all()
    torch.testing.assert_close(logp[1], crafted()[1])
    # A break that had been pulled to -inf is given a finite score: the line must end somehow.
    logp = crafted()
    logp[0, NEWLINE] = -math.inf
    ForceBreak(NEWLINE)(logp, controls(forced=[0]))
    assert logp[0, NEWLINE] == 0.0


def test_theme_pull_adds_each_rows_pulls_and_nothing_without_them():
    logp = crafted()
    ThemePull()(logp, controls())
    torch.testing.assert_close(logp, crafted())
    c = controls()
    c.pull_rows(VOCAB)[1, 4] = 2.0
    ThemePull()(logp, c)
    want = crafted()
    want[1, 4] += 2.0
    torch.testing.assert_close(logp, want)


def test_unstitch_discourages_the_listed_pairs_without_blocking_them():
    logp = crafted()
    c = controls()
    c.stitched[0].extend([0, 1])
    c.stitched[1].extend([2, 2])
    Unstitch(1.5)(logp, c)
    want = crafted()
    want[:, 2] -= 1.5
    torch.testing.assert_close(logp, want)


def test_no_copy_blocks_exactly_the_listed_pairs():
    logp = crafted()
    c = controls()
    c.block(0, (2, 3))
    c.block(1, (4,))
    NoCopy()(logp, c)
    assert torch.isneginf(logp[0, [2, 3]]).all() and torch.isneginf(logp[1, 4])
    assert torch.isfinite(logp).sum() == 2 * VOCAB - 3


def test_top_k_keeps_each_rows_k_best():
    logp = crafted()
    TopK()(logp, controls(top_k=np.array([2, 0])))
    assert torch.isfinite(logp[0]).nonzero().flatten().tolist() == [2, 3]
    torch.testing.assert_close(logp[1], crafted()[1])  # 0: off


def test_rescue_gives_a_dead_row_its_line_break():
    logp = crafted()
    logp[0] = -math.inf
    RescueDeadRows(NEWLINE)(logp, controls())
    assert logp[0, NEWLINE] == 0.0 and torch.isneginf(logp[0, [0, 2, 3, 4, 5]]).all()
    torch.testing.assert_close(logp[1], crafted()[1])


def test_a_forced_break_that_would_copy_a_line_is_rescued_not_left_dead():
    # The line so far is a training line, so no-copy forbids ending it; it is also too long to go on.
    logp = crafted()
    c = controls(forced=[0])
    c.block(0, (NEWLINE,))
    Shaper([ForceBreak(NEWLINE), NoCopy(), TopK(), RescueDeadRows(NEWLINE)])(logp, c)
    assert logp[0, NEWLINE] == 0.0
    assert torch.isneginf(logp[0, [0, 2, 3, 4, 5]]).all()
    assert Drawer(DampedTemperature(torch.zeros(VOCAB)))(logp, c, [0.7, 0.2])[0] == NEWLINE


def test_damped_temperature_leaves_half_the_unigram_at_temperature_one():
    unigram = torch.tensor([0.4, 0.1, 0.2, 0.1, 0.1, 0.1]).log()
    logp = crafted()
    c = controls(temperature=np.array([1.0, 0.5], dtype=np.float32))
    scaled = DampedTemperature(unigram, share=0.5)(logp, c)
    torch.testing.assert_close(scaled[0], crafted()[0])  # temperature 1 changes nothing
    # 1/T = 2: 2 log p + 0.5 (1 - 2) log p_unigram
    torch.testing.assert_close(scaled[1], 2 * crafted()[1] - 0.5 * unigram)


def test_top_p_keeps_the_smallest_nucleus():
    probs = crafted().exp()
    top_p(probs, controls(top_p=np.array([0.55, 1.0], dtype=np.float32)))
    assert (probs[0] > 0).nonzero().flatten().tolist() == [2, 3]  # 0.4 + 0.2 reaches 0.55; 0.4 alone does not
    assert (probs[1] > 0).all()


def test_top_p_counts_a_nucleus_a_rounding_short_of_the_boundary_as_reaching_it():
    # 0.5 + 0.3 is 0.8, but a float32 softmax may give 乙 a probability one ulp under 0.3 (the AVX2 kernels
    # do, where AVX-512 ones do not): the nucleus is still {甲, 乙}, on every CPU.
    under = torch.nextafter(torch.tensor(0.3), torch.tensor(0.0)).item()
    probs = torch.tensor([[0.0, 0.0, 0.5, under, 0.1, 0.05, 0.03, 0.02]])
    assert float(probs[0].cumsum(0)[3]) < float(np.float32(0.8))  # short of 0.8: the strict rule kept 丙
    top_p(probs, nucleus_controls(0.8, vocab=8))
    assert (probs[0] > 0).nonzero().flatten().tolist() == [2, 3]
    # A real shortfall is not rounding: 0.5 + 0.29 does not reach 0.8, so 丙 stays.
    short = torch.tensor([[0.5, 0.29, 0.11, 0.1]])
    top_p(short, nucleus_controls(0.8, vocab=4))
    assert (short[0] > 0).nonzero().flatten().tolist() == [0, 1, 2]


def nucleus_controls(top: float, vocab: int) -> Controls:
    c = Controls(1, vocab)
    c.top_p[:] = top
    return c


def test_drawer_draws_by_inverse_cdf_and_greedy_rows_take_the_best():
    c = controls(temperature=np.array([1.0, 0.0], dtype=np.float32))
    drawer = Drawer(DampedTemperature(torch.zeros(VOCAB), share=0.0))
    # Row 0's cumulative probabilities: .05 .15 .55 .75 .9 1.0
    assert drawer(crafted(), c, [0.01, 0.0]) == [0, 0]  # row 1 is greedy: its best is token 0 (0.3, first)
    assert drawer(crafted(), c, [0.5, 0.0])[0] == 2
    assert drawer(crafted(), c, [0.95, 0.0])[0] == 5
    # Only greedy rows: the model's choice (the first of equals), with no draw.
    greedy_only = controls(1, temperature=np.zeros(1, dtype=np.float32))
    assert Drawer(DampedTemperature(torch.zeros(VOCAB)))(uniform(1), greedy_only, [0.0]) == [0]
