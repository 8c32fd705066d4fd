"""A song's plan: its sections, and for each line its length, whether it rhymes, its keyword and what it repeats.

Real songs are built around a chorus: verse, chorus, verse, chorus. The plan gives about half the songs long
enough for it (``FORM_SHARE``, ``MIN_FORM_LINES``; about half the corpus' stretches of 20 lines have one) that
form: a first verse, a chorus of 2–4 lines written once, then verses each followed by the chorus sung again,
verbatim or (a chorus of 3+ lines, now and then) with a new last line. The other songs are verses of 8 lines.

A song ends at the line that reaches its length, unless that line is in a chorus (sung to its end) or in a
verse that the chorus must still follow. The verse before a repeated chorus is elastic: it closes as soon as
the chorus will carry the song to its length, so songs end on their chorus. A chorus is sung twice in a song of
average length and at most four times in a long one (``choruses``); past that, verses only.

Each line is planned when the one before it is done (``next_line``), because the plan follows the writing:
the rhyme group comes from the first line (unless the request names one), the keywords from the song's theme
(model.theme) once the first line has said what the song is about, and the elastic verse from how many
tokens the song has used. Everything is drawn from the song's own plan generator, apart from the token draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Real songs rhyme most lines with one group and change it now and then; these give the corpus' own rate of
# rhyming neighbours (about 55%) rather than a forced 100%.
RHYMED_SHARE = 0.9  # lines after the first that must end in the song's rhyme group
FREE_VERSE_LINES = 8  # in a song without form, a new verse (and, with rhyme auto, a new rhyme) every 8 lines

VERSE, CHORUS = "verse", "chorus"
MIN_FORM_LINES = 8  # a song expected to be shorter has no chorus
FORM_SHARE = 0.5  # share of the songs long enough for form that get it (the corpus: 44% of 20-line stretches)
CHORUS_LINES = (2, 3, 4)
CHORUS_WEIGHTS = (0.6, 0.3, 0.1)
FIRST_VERSE_LINES = (2, 8)  # inclusive bounds; the seed's line is the first
VERSE_LINES = (4, 6)  # the nominal length of a later verse; it closes early to end on the chorus
MIN_VERSE_LINES = 2
MAX_VERSE_LINES = 10  # a verse runs past its nominal length only while no chorus would fit after it
# A chorus is sung twice in a song of average length; a long song may sing it up to four times (five would be
# a loop). Every repeated line is one the listener (and a classifier) has heard before, so not more often.
LINES_PER_CHORUS = 10
MAX_CHORUSES = 4
NEW_LAST_LINE = 0.3  # share of repeats of a 3+-line chorus that end on a new line


@dataclass
class Section:
    """A verse or a chorus: its first line and how many lines it has (so far, for the one being written)."""

    kind: str
    start: int
    nominal: int  # the lines it is planned to have (a song without form: FREE_VERSE_LINES)
    lines: int = 0
    occurrence: int = 0  # 0 the first time a section of its kind comes, 1 the second...


@dataclass
class LinePlan:
    """One line of the plan."""

    length: int  # characters
    rhymed: bool  # must end in the song's rhyme group (when it has one)
    section: int  # index into SongPlan.sections
    keyword: str = ""  # a word the line should carry ("" for none)
    repeats: int | None = None  # the index of the line this one sings again, verbatim

    @property
    def written(self) -> bool:
        """Whether the line is written (rather than sung again from an earlier line)."""
        return self.repeats is None


@dataclass
class SongPlan:
    """The sections and lines planned so far, and what the rest of the song will be."""

    rng: np.random.Generator
    line_lengths: np.ndarray  # the corpus' line lengths, drawn from
    form: bool  # whether the song has verses and a chorus
    chorus_lines: int = 0
    first_verse: int = 0
    choruses: int = 0  # how many times the chorus may be sung
    sections: list[Section] = field(default_factory=list)
    lines: list[LinePlan] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)  # the theme's words, handed out to lines in turn
    chorus_keywords: list[str] = field(default_factory=list)  # the first is the chorus' first line's

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        line_lengths: np.ndarray,
        expected_lines: float,
        form_share: float | None = None,
    ) -> SongPlan:
        """A plan for a song expected to run to about ``expected_lines`` lines; ``form_share`` (FORM_SHARE unless
        given) of those long enough get verses and a chorus."""
        share = FORM_SHARE if form_share is None else form_share
        plan = cls(rng, line_lengths, form=expected_lines >= MIN_FORM_LINES and bool(rng.random() < share))
        if plan.form:
            plan.chorus_lines = int(rng.choice(CHORUS_LINES, p=CHORUS_WEIGHTS))
            plan.choruses = int(np.clip(expected_lines // LINES_PER_CHORUS, 2, MAX_CHORUSES))
            # The two verses share what the chorus, sung twice, leaves: V C V C.
            half = round((expected_lines - 2 * plan.chorus_lines) / 2) + int(rng.integers(-1, 2))
            plan.first_verse = int(np.clip(half, *FIRST_VERSE_LINES))
        return plan

    @property
    def current(self) -> LinePlan:
        return self.lines[-1]

    @property
    def section(self) -> Section:
        return self.sections[-1]

    def set_theme(self, keywords: list[str], chorus_keywords: list[str]) -> None:
        """The words lines will carry: ``chorus_keywords`` for the chorus, ``keywords`` for the verses."""
        self.keywords = list(keywords)
        self.chorus_keywords = list(chorus_keywords)

    def next_line(self, *, prefix: str, tokens: int, length: int, chorus_tokens: int, estimate: float) -> LinePlan:
        """Plan the next line.

        ``prefix`` is the part of it already written (the seed's last line), ``tokens`` how many tokens the song
        has so far, ``length`` how many it should reach, ``chorus_tokens`` how many one singing of the chorus
        takes (0 before it is written) and ``estimate`` the tokens an average line takes.
        """
        index = len(self.lines)
        kind = self._next_section(tokens, length, chorus_tokens, estimate)
        if kind is not None:
            self.sections.append(Section(kind, index, self._nominal(kind), 0, self._occurrences(kind)))
        section = self.section
        section.lines += 1
        repeats = self._repeats(section) if section.kind == CHORUS else None
        if repeats is not None:
            source = self.lines[repeats]
            plan = LinePlan(source.length, source.rhymed, len(self.sections) - 1, source.keyword, repeats)
        else:
            plan = self._written_line(index, prefix, section)
        self.lines.append(plan)
        return plan

    def new_rhyme(self) -> bool:
        """Whether the current line may choose a new rhyme (with rhyme auto): the first line of a song, or of a
        verse in a song without form. A song with form keeps one rhyme, so its chorus rhymes with its verses."""
        return self.section.start == len(self.lines) - 1 and (not self.form or len(self.sections) == 1)

    def ends_song(self, tokens: int, length: int) -> bool:
        """Whether the song may end after its current line: it has reached its length and is not inside a
        chorus (a chorus is sung to its end)."""
        if tokens < length:
            return False
        section = self.section
        if section.kind == CHORUS:
            return section.lines >= section.nominal
        # A verse after the chorus is followed by the chorus again, while it may still be sung.
        return not (self.form and 0 < self._occurrences(CHORUS) < self.choruses)

    # ---- the form

    def _occurrences(self, kind: str) -> int:
        return sum(s.kind == kind for s in self.sections)

    def _next_section(self, tokens: int, length: int, chorus_tokens: int, estimate: float) -> str | None:
        """The kind of the section the next line starts, or None if it continues the current one."""
        if not self.sections:
            return VERSE
        section = self.section
        if not self.form:
            return VERSE if section.lines >= section.nominal else None
        if section.kind == CHORUS:
            return None if section.lines < section.nominal else VERSE
        choruses = self._occurrences(CHORUS)
        if choruses >= self.choruses:
            return None
        if choruses == 0:
            return CHORUS if section.lines >= section.nominal else None
        # A later verse closes when the chorus will carry the song to its length; at its nominal end only if
        # another verse and chorus fit after that chorus, so that the song still ends on its chorus.
        chorus = chorus_tokens or self.chorus_lines * estimate
        enough = tokens + chorus >= length
        room = choruses + 1 < self.choruses and tokens + 2 * chorus + MIN_VERSE_LINES * estimate < length
        if section.lines >= MIN_VERSE_LINES and (
            enough or (section.lines >= section.nominal and room) or section.lines >= MAX_VERSE_LINES
        ):
            return CHORUS
        return None

    def _nominal(self, kind: str) -> int:
        if not self.form:
            return FREE_VERSE_LINES
        if kind == CHORUS:
            return self.chorus_lines
        if not self.sections:
            return self.first_verse
        return int(self.rng.integers(VERSE_LINES[0], VERSE_LINES[1] + 1))

    def _repeats(self, section: Section) -> int | None:
        """The line of the first chorus that this line of a chorus sings again; None to write it (the first
        time the chorus comes, and now and then a repeat's last line)."""
        if section.occurrence == 0:
            return None
        position = section.lines - 1
        if position == self.chorus_lines - 1 and self.chorus_lines >= 3 and self.rng.random() < NEW_LAST_LINE:
            return None
        first = next(s for s in self.sections if s.kind == CHORUS)
        return first.start + position

    def _written_line(self, index: int, prefix: str, section: Section) -> LinePlan:
        length = int(self.rng.choice(self.line_lengths))
        if prefix:
            length = max(length, len(prefix) + 2)
        first_of_song = index == 0
        rhymed = not first_of_song and bool(self.rng.random() < RHYMED_SHARE)
        keyword = ""
        position = index - section.start
        if section.kind == CHORUS and position < len(self.chorus_keywords):
            keyword = self.chorus_keywords[position]
        elif self.keywords and not first_of_song:
            keyword = self.keywords[(index - 1) % len(self.keywords)]
        return LinePlan(length, rhymed, len(self.sections) - 1, keyword)
