"""A song's plan: what each line should be before it is written.

The plan is drawn from the request's own generator (apart from the token draws), so it does not depend on how
many draws the writing took, nor on what else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Real songs rhyme most lines with one group and change it now and then; these give the corpus' own rate of
# rhyming neighbours (about 55%) rather than a forced 100%.
RHYMED_SHARE = 0.9  # lines after the first that must end in the song's rhyme group
VERSE_LINES = 8  # lines per verse; a new verse may take a new rhyme (set by its first line)


@dataclass
class LinePlan:
    """One line: its length in characters and whether it must end in the song's rhyme group."""

    length: int
    rhymed: bool = False


@dataclass
class SongPlan:
    """The lines planned so far; each is drawn when the line before it is done (its rhyme may depend on it)."""

    rng: np.random.Generator
    line_lengths: np.ndarray  # the corpus' line lengths, drawn from
    lines: list[LinePlan] = field(default_factory=list)

    @property
    def current(self) -> LinePlan:
        return self.lines[-1]

    def next_line(self, *, prefix: str, rhyme_known: bool, fixed_rhyme: bool) -> LinePlan:
        """Draw the next line's plan.

        ``prefix`` is the part of the line already written (the seed's last line), ``rhyme_known`` whether the
        song has a rhyme group now, ``fixed_rhyme`` whether the request named it (else each verse's first line
        sets it, and is not itself rhymed).
        """
        index = len(self.lines)
        length = int(self.rng.choice(self.line_lengths))
        if prefix:
            length = max(length, len(prefix) + 2)
        verse_start = index % VERSE_LINES == 0
        rhymed = rhyme_known and (fixed_rhyme or not verse_start) and bool(self.rng.random() < RHYMED_SHARE)
        self.lines.append(LinePlan(length, rhymed))
        return self.lines[-1]

    @staticmethod
    def starts_verse(index: int) -> bool:
        """Whether line ``index`` begins a verse (where an automatic rhyme is chosen afresh)."""
        return index % VERSE_LINES == 0
