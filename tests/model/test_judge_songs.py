"""The song-quality report's song-level measures (model.judge_songs), on songs whose values are worked out by
hand."""

import math
import random

import pytest

from model import judge, judge_lines, judge_songs
from model.corpus import load_corpus
from tests.helpers import SAMPLE_CORPUS

LINES = [line for line in load_corpus(SAMPLE_CORPUS).text.splitlines() if len(line) >= 4]
FILLER = ["从出生那年就飘着", "童年的荡秋千", "随记忆一直晃到现在", "我怎么看不见", "消失的下雨天", "教室的那一间"]


def test_the_first_lines_word_must_return_in_a_different_line_within_eight():
    assert judge_songs.content_words("窗外的麻雀") == ("窗外", "麻雀")  # jieba words of 2+ Han characters
    assert judge_songs.content_words("oh yeah 的") == ()
    returns = ["窗外的麻雀", "在电线杆上多嘴", "麻雀飞走了"]  # 麻雀 comes back in line 3
    too_late = ["窗外的麻雀", *FILLER, "在电线杆上多嘴", "麻雀飞走了"]  # … in line 9
    echo = ["窗外的麻雀", "窗外的麻雀", *FILLER]  # only in a line with the first line's text
    no_word = ["oh yeah", "oh yeah 麻雀", "在电线杆上多嘴"]  # the first line has no content word
    songs = (returns, too_late, echo, no_word)
    assert [judge_songs.seed_returns(song) for song in songs] == [True, False, False, False]
    assert judge_songs.seed_returns(["窗外的麻雀", *FILLER[:6], "麻雀飞走了"])  # line 8 is still in


def test_coherence_counts_words_shared_with_other_different_lines():
    # 天空的颜色: 天空 in no other different line, 颜色 in 颜色很美丽: 1/2. 颜色很美丽: 颜色 yes, 美丽 no: 1/2.
    # The repeated 天空的颜色 does not count as another line for itself: 1/2 again. "oh" has no content word.
    window = ["天空的颜色", "颜色很美丽", "天空的颜色", "oh"]
    assert judge_songs.coherence_raw([window]) == pytest.approx(1 / 2)
    # Lines are averaged over every window: 窗外的麻雀 and 麻雀飞走了 share 麻雀, one word of two each.
    assert judge_songs.coherence_raw([window, ["窗外的麻雀", "麻雀飞走了"]]) == pytest.approx((3 / 2 + 2 / 2) / 5)
    assert math.isnan(judge_songs.coherence_raw([["oh", "yeah"]]))


def test_windows_keep_a_last_partial_one_only_when_asked():
    lines = [str(i) for i in range(10)]
    assert [len(w) for w in judge_songs.windows(lines, 8, 2)] == [8, 2]
    assert [len(w) for w in judge_songs.windows(lines[:9], 8, 2)] == [8]  # a last single line is no window
    assert [len(w) for w in judge_songs.windows(lines, 4)] == [4, 4]
    assert judge_songs.window_docs(lines) == ["0/1/2/3", "4/5/6/7"]
    # The corpus' windows are real stretches: four different lines.
    assert judge_songs.corpus_window_docs(["a", "b", "c", "d", "e", "f", "e", "g"]) == ["a/b/c/d"]


def test_coherence_is_scaled_between_shuffled_and_consecutive_corpus_lines():
    assert judge_songs.scale_coherence(0.3, corpus_raw=0.5, shuffled_raw=0.1) == pytest.approx(0.5)
    # An echo overshoots.
    assert judge_songs.scale_coherence(0.9, corpus_raw=0.5, shuffled_raw=0.1) == pytest.approx(2.0)
    assert math.isnan(judge_songs.scale_coherence(0.3, corpus_raw=0.1, shuffled_raw=0.1))
    # Four songs of eight lines, each about one thing: every line's one content word is in all the others.
    text = "\n".join(f"{theme}第{i}次" for theme in ("麻雀", "天空", "咖啡", "老街") for i in range(8))
    reference = judge.Reference.build(text)
    assert reference.corpus_coherence == 1 and reference.shuffled_coherence < 1
    corpus = judge.corpus_figures("", text, reference)
    assert corpus.coherence == pytest.approx(1.0) and corpus.coherence_raw == reference.corpus_coherence
    assert judge.shuffled_figures(reference).coherence == pytest.approx(0.0)
    assert sorted(reference.shuffled) == sorted(reference.lines) and reference.shuffled != reference.lines


def test_a_chorus_is_a_block_of_different_lines_that_comes_back():
    a, b, c, d = "窗外的麻雀", "在电线杆上多嘴", "你说这一句", "很有夏天的感觉"
    assert judge_songs.has_chorus([a, b, c, a, b])
    assert judge_songs.has_chorus([d, a, b, c, d, a, b, "changed last line"])  # a 3-line chorus, last line changed
    assert not judge_songs.has_chorus([a, a, b, a, a])  # only a block of one line twice comes back
    assert not judge_songs.has_chorus([a, b, c, d, b, a])  # the lines come back, not in the same order
    songs = ([a, b, c, a, b], [a, a, b, a, a], [a, b, c])
    assert judge_songs.share(judge_songs.has_chorus(song) for song in songs) == 1 / 3


def test_the_corpus_is_read_as_20_line_songs_for_the_chorus():
    a, b = "窗外的麻雀", "在电线杆上多嘴"
    lines = [f"第{i}行" for i in range(40)]
    across = [*lines[:18], a, b, lines[20], a, b, *lines[23:]]  # the block's copies in different stretches
    within = [*lines[:10], a, b, *lines[12:15], a, b, *lines[17:]]
    reference = judge.Reference.build("\n".join(lines))
    assert judge.stream_figures(across, reference).chorus == 0
    assert judge.stream_figures(within, reference).chorus == pytest.approx(1 / 2)
    assert judge.stream_figures(within, reference).songs == 2


def test_patchwork_counts_characters_inside_corpus_5_grams_within_a_line():
    ngrams = set(judge_lines.char_ngrams(["一二三四五六七", "天青色等", "烟雨而我"], 5))
    assert judge_songs.patchwork(["一二三四五六X"], ngrams) == pytest.approx(6 / 7)  # two 5-grams cover 6 characters
    assert judge_songs.patchwork(["天青色等烟雨"], ngrams) == 0  # its 5-grams span a line break of the corpus
    assert judge_songs.patchwork(["一二三四五六X", "天青色等烟雨"], ngrams) == pytest.approx(6 / 13)


def test_patchwork_of_the_corpus_is_its_new_held_out_lines_against_its_training_part():
    train, heldout = "一二三四五六七\n你说这一句\n", "你说这一句\n一二三四五八九十\n"
    reference = judge.Reference.build(train + heldout)
    # 你说这一句 is a training line, left out; 一二三四五八九十 has 5 of its 8 characters in 一二三四五.
    assert judge.corpus_figures(train, heldout, reference).patchwork == pytest.approx(5 / 8)
    song = "一二三四五八九十\n一二三四五八九十\n窗外"
    # Against the whole corpus: both copies of the line are old (16 characters), 窗外 is not.
    assert judge.figures([song] * 10, reference).patchwork == pytest.approx(16 / 18)


def test_the_song_figures_are_wired_into_a_column():
    reference = judge.Reference.build("\n".join(LINES))
    a, b = "窗外的麻雀", "在电线杆上多嘴"
    songs = ["\n".join([a, b, "麻雀飞走了", a, b]), "\n".join([a, *FILLER, b, "麻雀飞走了"]), "\n".join(FILLER)]
    column = judge.figures(songs, reference)
    assert column.seed_returns == pytest.approx(1 / 3)  # the first song only: the second's 麻雀 comes in line 9
    assert column.chorus == pytest.approx(1 / 3)
    assert column.coherence == pytest.approx(reference.coherence(column.coherence_raw))
    assert math.isnan(column.window_auc)  # fewer than 10 windows say nothing


def test_the_window_test_sees_lines_that_do_not_belong_together():
    rng = random.Random(0)
    lines = load_corpus(SAMPLE_CORPUS).text.splitlines()
    corpus = judge_songs.corpus_window_docs(lines)
    assert len(corpus) >= 40
    chars = [ch for line in lines for ch in line]
    salad = ["/".join("".join(rng.choice(chars) for _ in line) for line in doc.split("/")) for doc in corpus]
    assert judge_songs.window_auc(corpus, salad) > 0.7
    mixed = rng.sample(corpus, len(corpus))
    half = len(mixed) // 2
    assert abs(judge_songs.window_auc(mixed[:half], mixed[half:]) - 0.5) < 0.15
