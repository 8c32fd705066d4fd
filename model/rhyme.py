"""Rhyme groups of sung Mandarin, from pypinyin finals.

A line rhymes with the next when their last Chinese characters fall in the same group. Groups follow
the traditional 十三辙 (thirteen rhyme tracks of northern song) with the medial dropped: 花 huā and 家
jiā rhyme (-a), 天 tiān and 远 yuǎn rhyme (-an), 花 and 天 do not. One change from 十三辙: the bare
final -e (的, 歌) sits with -ie/-üe (夜, 月) rather than with -o/-uo, as pop lyrics sing it.
"""

from __future__ import annotations

import functools
import unicodedata

from pypinyin import Style, lazy_pinyin

# Group name (the track's plain final) -> pypinyin's strict finals ("v" is ü).
GROUPS: dict[str, tuple[str, ...]] = {
    "a": ("a", "ia", "ua"),  # 发花
    "o": ("o", "uo"),  # 梭波
    "e": ("e", "ie", "ve"),  # 乜斜 (with the bare -e)
    "i": ("i", "v", "er"),  # 一七 (zhi/chi/shi/ri/zi/ci/si give "i" too)
    "u": ("u",),  # 姑苏
    "ai": ("ai", "uai"),  # 怀来
    "ei": ("ei", "uei"),  # 灰堆
    "ao": ("ao", "iao"),  # 遥条
    "ou": ("ou", "iou"),  # 由求
    "an": ("an", "ian", "uan", "van"),  # 言前
    "en": ("en", "in", "uen", "vn"),  # 人辰
    "ang": ("ang", "iang", "uang"),  # 江阳
    "eng": ("eng", "ing", "ong", "iong", "ueng"),  # 中东
}
_GROUP_OF_FINAL = {final: group for group, finals in GROUPS.items() for final in finals}
TRACKS = {  # the 十三辙 name of each group, for people
    "a": "发花",
    "o": "梭波",
    "e": "乜斜",
    "i": "一七",
    "u": "姑苏",
    "ai": "怀来",
    "ei": "灰堆",
    "ao": "遥条",
    "ou": "由求",
    "an": "言前",
    "en": "人辰",
    "ang": "江阳",
    "eng": "中东",
}


def rhyme_name(group: str) -> str:
    """How a rhyme group is shown: its final and its track, e.g. "-ang (江阳)"."""
    return f"-{group} ({TRACKS[group]})" if group in TRACKS else group


def is_han(ch: str) -> bool:
    """Whether ``ch`` is a Chinese character (CJK unified ideograph)."""
    return len(ch) == 1 and unicodedata.name(ch, "").startswith("CJK UNIFIED IDEOGRAPH")


@functools.lru_cache(maxsize=65536)
def line_rhyme(line: str) -> str | None:
    """The rhyme group of a line's last Chinese character, read in the context of the line; None if it has none.

    The whole line goes to pypinyin so that its phrase dictionary picks the reading a word gives the
    character (a heteronym such as 了 reads le at the end of 走了).
    """
    end = len(line)
    while end > 0 and not is_han(line[end - 1]):
        end -= 1
    if end == 0:
        return None
    start = end - 1
    while start > 0 and is_han(line[start - 1]) and end - start < 4:
        start -= 1  # a few characters of context are enough for the phrase dictionary
    finals = lazy_pinyin(line[start:end], style=Style.FINALS, strict=True)
    return _GROUP_OF_FINAL.get(finals[-1]) if finals else None


def char_rhyme(ch: str) -> str | None:
    """The rhyme group of one character read alone; None if it is not Chinese or has no final."""
    return line_rhyme(ch) if is_han(ch) else None


def rhymes(a: str, b: str) -> bool:
    """Whether two lines rhyme: their last Chinese characters share a rhyme group."""
    group = line_rhyme(a)
    return group is not None and group == line_rhyme(b)
