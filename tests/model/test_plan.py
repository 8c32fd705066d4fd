"""A song's plan (model.plan): its form, the chorus lines that repeat, the keywords, where it ends."""

from __future__ import annotations

import numpy as np
import pytest

from model.plan import (
    CHORUS,
    FORM_SHARE,
    FREE_VERSE_LINES,
    MAX_CHORUSES,
    MIN_FORM_LINES,
    VERSE,
    SongPlan,
)

TOKENS_PER_LINE = 8


def write(plan: SongPlan, length: int, theme: tuple[list[str], list[str]] | None = None) -> SongPlan:
    """Plan lines as the sampler does, each line costing TOKENS_PER_LINE tokens, until the plan ends the song."""
    tokens = 0
    chorus_tokens = 0
    while True:
        plan.next_line(prefix="", tokens=tokens, length=length, chorus_tokens=chorus_tokens, estimate=TOKENS_PER_LINE)
        tokens += TOKENS_PER_LINE
        section = plan.section
        if section.kind == CHORUS and section.occurrence == 0 and section.lines == section.nominal:
            chorus_tokens = section.lines * TOKENS_PER_LINE
        if len(plan.lines) == 1 and theme:
            plan.set_theme(*theme)
        if plan.ends_song(tokens, length):
            return plan
        assert len(plan.lines) < 500, "the plan never ends"


def plan_for(length: int, seed: int = 0, form_share: float = 1.0) -> SongPlan:
    rng = np.random.default_rng(seed)
    return SongPlan.draw(rng, np.array([6, 8, 10, 12]), length / TOKENS_PER_LINE, form_share)


@pytest.mark.parametrize("seed", range(20))
def test_a_default_song_has_verses_and_a_chorus_sung_again_where_planned(seed):
    plan = write(plan_for(150, seed), 150)
    kinds = [s.kind for s in plan.sections]
    assert kinds == [VERSE, CHORUS, VERSE, CHORUS]  # a song of average length sings its chorus twice
    assert kinds[-1] == CHORUS, "the song ends on its chorus"
    first = plan.sections[1]
    assert 2 <= first.lines == plan.chorus_lines <= 4
    for section in plan.sections:
        lines = plan.lines[section.start : section.start + section.lines]
        if section.kind == VERSE:
            assert all(line.repeats is None for line in lines)
        elif section.occurrence == 0:
            assert all(line.repeats is None for line in lines), "the first chorus is written"
        else:
            assert section.lines == plan.chorus_lines
            for position, line in enumerate(lines):
                if line.repeats is None:  # a new last line, only at the end of a 3+-line chorus
                    assert position == plan.chorus_lines - 1 >= 2
                else:
                    assert line.repeats == first.start + position
                    source = plan.lines[line.repeats]
                    assert (line.length, line.rhymed, line.keyword) == (source.length, source.rhymed, source.keyword)


def test_a_repeat_sometimes_ends_on_a_new_line_and_usually_not():
    new, repeats = 0, 0
    for seed in range(200):
        plan = write(plan_for(150, seed), 150)
        if plan.chorus_lines < 3:
            continue
        for section in plan.sections:
            if section.kind == CHORUS and section.occurrence > 0:
                repeats += 1
                new += plan.lines[section.start + section.lines - 1].repeats is None
    assert 0.15 < new / repeats < 0.45


def test_the_song_reaches_its_length_and_ends_on_its_chorus():
    for seed in range(30):
        plan = write(plan_for(150, seed), 150)
        tokens = len(plan.lines) * TOKENS_PER_LINE
        assert tokens >= 150
        # Past its length only to finish the chorus it is in.
        assert tokens - 150 < plan.chorus_lines * TOKENS_PER_LINE


def test_about_form_share_of_the_songs_have_form():
    with_form = sum(plan_for(150, seed, FORM_SHARE).form for seed in range(400)) / 400
    assert abs(with_form - FORM_SHARE) < 0.07


def test_a_short_song_has_no_form():
    length = (MIN_FORM_LINES - 1) * TOKENS_PER_LINE
    plan = write(plan_for(length), length)
    assert [s.kind for s in plan.sections] == [VERSE]
    assert all(line.repeats is None for line in plan.lines)


def test_a_long_song_sings_its_chorus_at_most_max_choruses_times():
    plan = write(plan_for(2000), 2000)
    assert plan.choruses == MAX_CHORUSES
    assert sum(s.kind == CHORUS for s in plan.sections) == MAX_CHORUSES
    sung = {}
    for line in plan.lines:
        key = line.repeats if line.repeats is not None else id(line)
        sung[key] = sung.get(key, 0) + 1
    assert max(sung.values()) <= MAX_CHORUSES  # a line sung 5 times would be a loop


def test_keywords_go_to_the_lines_and_the_seed_word_to_the_chorus():
    keywords = ["月色", "炊烟", "隔江", "前朝"]
    plan = write(plan_for(150, 3), 150, theme=(keywords, ["烟雨", "前朝"]))
    assert plan.lines[0].keyword == ""  # the first line is the seed's
    chorus = plan.sections[1]
    assert [plan.lines[chorus.start + i].keyword for i in range(2)] == ["烟雨", "前朝"]
    verse_keywords = [line.keyword for line in plan.lines[1 : chorus.start]]
    assert verse_keywords == [keywords[i % len(keywords)] for i in range(len(verse_keywords))]  # in turn
    assert all(line.keyword for line in plan.lines[1:])


def test_the_first_line_may_set_a_new_rhyme_and_a_song_with_form_keeps_it():
    plan = write(plan_for(150, 1), 150)
    firsts = []
    replay = plan_for(150, 1)
    tokens = 0
    for _ in plan.lines:
        replay.next_line(prefix="", tokens=tokens, length=150, chorus_tokens=0, estimate=TOKENS_PER_LINE)
        tokens += TOKENS_PER_LINE
        firsts.append(replay.new_rhyme())
    assert firsts[0] and not any(firsts[1:])


def test_a_song_without_form_takes_a_new_rhyme_every_free_verse():
    length = (MIN_FORM_LINES - 1) * TOKENS_PER_LINE
    plan = SongPlan.draw(np.random.default_rng(0), np.array([8]), length / TOKENS_PER_LINE)
    news = []
    for i in range(2 * FREE_VERSE_LINES + 1):
        plan.next_line(prefix="", tokens=i, length=10**6, chorus_tokens=0, estimate=TOKENS_PER_LINE)
        news.append(plan.new_rhyme())
    assert [i for i, new in enumerate(news) if new] == [0, FREE_VERSE_LINES, 2 * FREE_VERSE_LINES]


def test_the_first_line_leaves_room_after_the_seed():
    plan = SongPlan.draw(np.random.default_rng(0), np.array([4]), 20)
    line = plan.next_line(prefix="窗外的麻雀飞", tokens=0, length=150, chorus_tokens=0, estimate=8)
    assert line.length == len("窗外的麻雀飞") + 2


def test_the_same_generator_gives_the_same_plan():
    a, b = write(plan_for(300, 9), 300), write(plan_for(300, 9), 300)
    assert a.lines == b.lines and a.sections == b.sections
