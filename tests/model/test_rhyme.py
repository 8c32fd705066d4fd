import pytest

from model.rhyme import GROUPS, char_rhyme, line_rhyme, rhyme_name, rhymes


@pytest.mark.parametrize(
    "a, b",
    [("花", "家"), ("天", "远"), ("光", "窗"), ("风", "中"), ("心", "人"), ("夜", "月"), ("雨", "里"), ("笑", "到")],
)
def test_characters_that_rhyme_in_sung_mandarin(a, b):
    assert char_rhyme(a) is not None
    assert char_rhyme(a) == char_rhyme(b)


@pytest.mark.parametrize("a, b", [("花", "天"), ("风", "天"), ("光", "心"), ("我", "你"), ("走", "来")])
def test_characters_that_do_not(a, b):
    assert char_rhyme(a) != char_rhyme(b)


def test_a_line_rhymes_on_its_last_chinese_character():
    assert rhymes("故事的小黄花", "我的家")
    assert not rhymes("故事的小黄花", "从出生那年就飘着")
    assert line_rhyme("窗外的麻雀 oh yeah ") == char_rhyme("雀")  # trailing Latin and spaces are skipped
    assert line_rhyme("oh yeah") is None
    assert line_rhyme("") is None


def test_a_heteronym_is_read_as_its_word_reads_it():
    # 了 ends 走了 as le (-e), not liǎo (-ao); 长 in 长大 is zhǎng (-ang) either way.
    assert line_rhyme("你走了") == "e"
    assert line_rhyme("我们长大") == "a"


def test_every_group_has_a_name():
    assert all(rhyme_name(group).startswith(f"-{group} (") for group in GROUPS)
