import math
import random

import numpy as np
import pytest

from model.ngram import NgramModel, char_ngram_bpc, em_weights


def test_distribution_is_a_distribution_and_agrees_with_prob():
    rng = random.Random(0)
    seq = [rng.randrange(6) for _ in range(500)]
    model = NgramModel.fit(seq, order=3, vocab_size=8)
    for history in ([], [1], [2, 3], seq[-10:]):
        dist = model.distribution(history)
        assert dist.sum() == pytest.approx(1.0)
        assert all(dist[s] == pytest.approx(model.prob(history, s)) for s in range(8))
        assert dist[7] > 0  # never seen, still possible


def test_a_frozen_model_memoises_and_refuses_counts():
    model = NgramModel.fit([1, 2, 3, 1, 2, 4], order=2, vocab_size=5).freeze()
    first = model.distribution([0, 1])
    assert model.distribution([9, 1]) is first  # same context of one token: served from the memo
    assert first[2] > first[4]
    with pytest.raises(RuntimeError, match="frozen"):
        model.add([1, 2], 1)


def test_cache_grows_as_a_song_is_written():
    cache = NgramModel(order=3, vocab_size=10, discount=0.5)
    song = [1, 2, 3]
    for i in range(len(song)):
        cache.add(song, i)
    assert cache.prob([1, 2], 3) > 0.5


def test_em_weights_prefer_the_better_component():
    good = np.full(100, 0.5)
    bad = np.full(100, 0.01)
    weights = em_weights(np.stack([good, bad]))
    assert weights[0] > 0.95 and weights.sum() == pytest.approx(1.0)


def test_character_bars_fall_with_order_on_patterned_text():
    rng = random.Random(1)
    phrases = ["窗外的雨", "街角的你", "回忆的歌", "天空的蓝"]
    text = "".join(rng.choice(phrases) + "\n" for _ in range(600))
    cut = int(len(text) * 0.9)
    uni, bi, tri = (char_ngram_bpc(text[:cut], text[cut:], n) for n in (1, 2, 3))
    assert uni > bi > tri
    assert tri < math.log2(20) and tri > 0
