"""The song-quality report's line-level measures (model.judge_lines)."""

import random

import pytest

from model import judge, judge_lines
from model.corpus import load_corpus
from tests.helpers import SAMPLE_CORPUS

LINES = [line for line in load_corpus(SAMPLE_CORPUS).text.splitlines() if len(line) >= 4]


def test_the_character_test_cannot_tell_a_sample_of_the_corpus_from_the_corpus():
    rng = random.Random(0)
    shuffled = LINES[:]
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    assert abs(judge_lines.classifier_auc(shuffled[:half], shuffled[half:], analyzer="char") - 0.5) < 0.15


def test_the_character_test_tells_word_salad_apart():
    rng = random.Random(0)
    chars = [ch for line in LINES for ch in line]
    salad = ["".join(rng.choice(chars) for _ in range(len(line))) for line in LINES]
    assert judge_lines.classifier_auc(LINES, salad, analyzer="char") > 0.7


def test_the_syntax_test_sees_shape_whatever_the_words():
    # Same words, scrambled order: the characters are the same, the part-of-speech sequences are not.
    rng = random.Random(1)
    scrambled = []
    for line in LINES:
        words = list(judge.segment(line))
        rng.shuffle(words)
        scrambled.append("".join(words))
    tags = [judge_lines.pos_tags(line) for line in LINES]
    scrambled_tags = [judge_lines.pos_tags(line) for line in scrambled]
    assert judge_lines.classifier_auc(tags, scrambled_tags, analyzer="word") > 0.7


def test_word_likeness_prefers_words_to_gibberish():
    assert judge_lines.wordlike(["我们在一起", "天空很蓝"]) > judge_lines.wordlike(["瘪囧嬲烎", "砼氼犇"]) + 3


def test_loops_are_stuck_repetition_not_song_form():
    chorus = ["窗外的麻雀", "在电线杆上多嘴"]
    assert not judge_lines.has_loop(chorus * 2 + ["你说这一句", "很有夏天的感觉"] + chorus * 2)
    assert judge_lines.has_loop(["我想你"] * 5)
    assert judge_lines.has_loop(["你好你好你好你好你好"])
    assert not judge_lines.has_loop(["你好你好你好你好", "再见"])


def test_a_chorus_sung_up_to_four_times_is_not_a_loop():
    chorus = ["窗外的麻雀", "在电线杆上多嘴", "你说这一句", "很有夏天的感觉"]
    verse = ["从出生那年就飘着", "童年的荡秋千"]
    for size in (2, 3, 4):
        for times in (2, 3, 4):
            assert not judge_lines.has_loop(verse + chorus[:size] * times), (size, times)  # back to back
            assert not judge_lines.has_loop((verse + chorus[:size]) * times), (size, times)  # between verses
        assert judge_lines.has_loop(verse + chorus[:size] * 5)  # each line 5 times: stuck


def test_rhyme_rate_counts_adjacent_pairs():
    songs = [["故事的小黄花", "我的家", "天空"], ["风", "中"]]
    everything, distinct = judge_lines.rhyme_rates(songs)
    assert everything == pytest.approx(2 / 3)  # 花/家 and 风/中 rhyme, 家/天 do not
    assert distinct == everything


def test_a_repeated_chorus_earns_no_rhyme_twice():
    # Pairs: 花/家 rhymes, 家/天空 and 天空/花 do not, then 花/家 again; 家/家 is no pair of different lines.
    songs = [["花", "家", "天空", "花", "家", "家"], ["花", "家"]]
    everything, distinct = judge_lines.rhyme_rates(songs)
    assert everything == pytest.approx(4 / 6)  # 花/家 twice in the first song, 家/家, 花/家 in the second
    # Distinct pairs of different lines, once per song: 花/家, 家/天空, 天空/花 in the first; 花/家 in the second.
    assert distinct == pytest.approx(2 / 4)


def test_novelty_counts_copied_lines_and_spans():
    reference = judge.Reference.build("窗外的麻雀在电线杆上多嘴\n你说这一句\n")
    figures = judge.figures(["窗外的麻雀在电线杆上多嘴\n天空很蓝你的微笑很甜很甜\n你说这一句"] * 10, reference)
    assert figures.verbatim == pytest.approx(2 / 3)
    # 13 characters copied give 6 copied 8-grams; the new 13-character line gives 6 new ones.
    assert figures.novel_ngrams == pytest.approx(6 / 12)


def test_verbatim_counts_a_songs_repeated_line_once():
    reference = judge.Reference.build("窗外的麻雀在电线杆上多嘴\n你说这一句\n")
    # Without counting each song's lines once, the new line sung three times would make it 1/4.
    song = "窗外的麻雀在电线杆上多嘴\n天空很蓝你的微笑很甜很甜\n天空很蓝你的微笑很甜很甜\n天空很蓝你的微笑很甜很甜"
    assert judge.figures([song] * 10, reference).verbatim == pytest.approx(1 / 2)
    assert judge_lines.distinct_lines([["a", "b", "a"], ["a"]]) == ["a", "b", "a"]
