"""No-copy: the training lines and spans a song may not reproduce, and what it still may write."""

import pytest

from model.novelty import LINE_CHARS, SPAN_CHARS, NoveltyGuard
from model.vocab import NEWLINE, UNK, Vocab

SPARROW = "窗外的麻雀在电线杆上多嘴"  # 12 characters: long enough for the 8-character span rule
SHORT = "我爱你啊"  # 4 characters: a line that counts as a copy when verbatim, too short for a span
OH = "哦哦"  # shorter than LINE_CHARS: an interjection, free to repeat
TRAIN = NEWLINE.join([SPARROW, SHORT, OH, "你说这一句很有夏天的感觉"]) + NEWLINE


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    chars = sorted(set(TRAIN + "他看呀") - {NEWLINE})
    return Vocab([UNK, NEWLINE, *chars, "电线", "麻雀"])


@pytest.fixture(scope="module")
def guard(vocab: Vocab) -> NoveltyGuard:
    return NoveltyGuard(TRAIN, vocab)


def test_the_rules_default_to_lines_of_four_and_spans_of_eight_characters():
    assert (LINE_CHARS, SPAN_CHARS) == (4, 8)


def test_a_training_line_is_found_verbatim_but_an_interjection_is_not(guard):
    song = NEWLINE.join([SHORT, "我爱你呀", OH, SPARROW])
    assert guard.copied(song) == [SHORT, SPARROW]


def test_the_token_that_would_finish_a_training_line_is_refused_and_so_is_the_line_break_after_one(guard, vocab):
    assert vocab.stoi["啊"] in guard.forbidden("我爱你")
    assert vocab.stoi["呀"] not in guard.forbidden("我爱你")  # 我爱你呀 is a new line
    assert guard.forbidden("我爱你啊") == (vocab.stoi[NEWLINE],)  # only closing the copied line is refused
    assert vocab.stoi["哦"] not in guard.forbidden("哦")  # too short to count as a copy


def test_eight_characters_in_a_row_from_a_training_line_are_refused_seven_pass(guard, vocab):
    # "他" starts a new line; then 窗外的麻雀在电 (7 characters of the training line) is still allowed ...
    assert vocab.stoi["电"] not in guard.forbidden("他窗外的麻雀在")
    # ... the eighth is not, whether it comes as a character or inside a word.
    assert vocab.stoi["线"] in guard.forbidden("他窗外的麻雀在电")
    assert vocab.stoi["电线"] in guard.forbidden("他窗外的麻雀在")
    assert vocab.stoi["杆"] not in guard.forbidden("他窗外的麻雀在电")  # a span the training line does not hold


def test_a_span_across_a_line_break_is_no_copy(guard, vocab):
    # 杆上多嘴 ends one training line and 你说这 starts another: together they were never sung in one line.
    assert vocab.stoi["一"] not in guard.forbidden("杆上多嘴你说这")


def test_a_fresh_line_has_nothing_forbidden(guard):
    assert guard.forbidden("") == ()
    assert guard.forbidden("他看") == ()


def test_the_span_length_is_a_setting(vocab):
    strict = NoveltyGuard(TRAIN, vocab, span_chars=4)
    assert vocab.stoi["雀"] in strict.forbidden("他窗外的麻")  # 外的麻雀: four characters of a training line
    assert vocab.stoi["雀"] not in NoveltyGuard(TRAIN, vocab).forbidden("他窗外的麻")
