"""What a song is about (model.theme): related words from the corpus, and the theme's pulls line by line."""

from __future__ import annotations

import numpy as np
import pytest

from model.theme import (
    ECHO_PULL,
    KEYWORD_PULL,
    SEED_PULL,
    SPELL_PULL,
    THEME_PULL,
    WINDOW_LINES,
    SongTheme,
    ThemeFinder,
    content_words,
)
from model.vocab import Vocab, segment

# Two kinds of verse: the sea's and the city's, each 8 lines (one window), alternating.
SEA = [
    "大海的浪花",
    "沙滩上的贝壳",
    "海风吹着浪花",
    "贝壳里的大海",
    "夕阳落在沙滩",
    "浪花拍着沙滩",
    "海风和夕阳",
    "大海",
]
CITY = ["城市的霓虹", "街角的咖啡", "霓虹照着街角", "咖啡馆的招牌", "地铁穿过城市", "招牌和霓虹", "街角的地铁", "城市"]


@pytest.fixture(scope="module")
def finder() -> ThemeFinder:
    text = "\n".join((SEA + CITY) * 6) + "\n"
    words = segment(text)
    vocab = Vocab.build(words, min_count=1)
    return ThemeFinder(vocab.words_to_ids(words).ids, vocab)


def test_content_words_are_chinese_words_of_two_or_more_characters():
    assert content_words("窗外的麻雀 oh 我") == ["窗外", "麻雀"]
    assert content_words("我的你") == []


def test_related_words_are_the_ones_that_share_its_windows(finder: ThemeFinder):
    related = [finder.vocab.itos[r.token] for r in finder.related(["大海"], 6)]
    assert related and set(related) <= {"浪花", "沙滩", "贝壳", "海风", "夕阳"}
    city = [finder.vocab.itos[r.token] for r in finder.related(["霓虹"], 6)]
    assert city and not set(city) & {"浪花", "沙滩", "贝壳", "海风", "夕阳"}
    assert "大海" not in related  # the word itself is not its own theme


def test_a_word_sung_once_or_twice_carries_no_theme():
    # 灯塔 shares both its (overlapping) windows with 大海 and nothing else: by PMI alone it would lead the
    # sea's theme, though it is one line's word; pulled into songs, it would copy that line.
    text = "\n".join((SEA + CITY) * 6) + "\n" + "\n".join([*SEA[:4], "灯塔照着大海", *SEA[5:]]) + "\n"
    words = segment(text)
    vocab = Vocab.build(words, min_count=1)
    assert "灯塔" in vocab
    finder = ThemeFinder(vocab.words_to_ids(words).ids, vocab)
    related = [finder.vocab.itos[r.token] for r in finder.related(["大海"], 6)]
    assert related and "灯塔" not in related
    assert vocab.stoi["灯塔"] not in finder.content


def test_a_word_the_corpus_never_sings_falls_back_to_its_characters(finder: ThemeFinder):
    # 海鸥 is nowhere in the corpus; 海 is, in the sea's verses.
    related = {finder.vocab.itos[r.token] for r in finder.related(["海鸥"], 6)}
    assert related and related <= {"浪花", "沙滩", "贝壳", "夕阳", "大海", "海风"}
    assert finder.related(["饕餮"], 6) == []  # nothing to go on: no theme, not a random one


def test_windows_are_verses_of_lines(finder: ThemeFinder):
    assert all(text.count("\n") == WINDOW_LINES - 1 for text in finder.texts)


def theme_vocab() -> Vocab:
    return Vocab(["<unk>", "\n", "我", "的", "大海", "浪花", "沙滩", "麻", "雀", "城市"])


def test_the_theme_pulls_its_words_the_songs_own_and_the_keyword():
    vocab = theme_vocab()
    content = np.array([len(t) >= 2 and t != "<unk>" for t in vocab.itos])
    theme = SongTheme(vocab, content, seed_words=["大海"], related=["浪花"])
    theme.begin_line(sung=[[vocab.stoi["城市"], vocab.stoi["的"]]], keyword="沙滩")
    row = np.zeros(len(vocab), dtype=np.float32)
    theme.row(row, tokens=[], line="")
    s = vocab.stoi
    assert row[s["大海"]] == SEED_PULL and row[s["浪花"]] == THEME_PULL
    assert row[s["城市"]] == ECHO_PULL and row[s["的"]] == 0  # sung, but not a content word
    assert row[s["沙滩"]] == KEYWORD_PULL
    # A word the line already has is not pulled again.
    theme.row(row, tokens=[s["大海"], s["沙滩"]], line="大海沙滩")
    assert row[s["大海"]] == 0 and row[s["沙滩"]] == 0 and row[s["浪花"]] == THEME_PULL


def test_a_word_spelled_in_characters_is_pulled_by_its_first_then_its_next():
    vocab = theme_vocab()
    theme = SongTheme(vocab, np.zeros(len(vocab), dtype=bool), seed_words=["麻雀"], related=[])
    theme.begin_line(sung=[], keyword="")
    row = np.zeros(len(vocab), dtype=np.float32)
    s = vocab.stoi
    theme.row(row, tokens=[s["我"]], line="我")
    assert row[s["麻"]] == SEED_PULL and row[s["雀"]] == 0
    theme.row(row, tokens=[s["我"], s["麻"]], line="我麻")
    assert row[s["雀"]] == SPELL_PULL
