"""Keeping songs new: the training lines and spans a song may not reproduce.

A lyric that reads well because it is a real Jay Chou line is plagiarism, not writing. With no-copy on,
the sampler forbids, at each step, every token that would

- finish a line that is verbatim a training line of ``LINE_CHARS`` or more characters (and the line
  break that would close such a line), or
- complete a run of ``SPAN_CHARS`` characters that occurs inside a training line.

New lines by the real writer share almost none of their 8-character spans with his earlier songs
(99.9% are new), so the span rule costs real lyrics nothing, while it lets the sampler lean on the
count models' phrases without stitching whole lines together.
"""

from __future__ import annotations

import functools
from collections import defaultdict

from .vocab import NEWLINE, Vocab

LINE_CHARS = 4  # lines this long count as copies when verbatim (shorter ones are interjections: 你说, 哦)
SPAN_CHARS = 8  # no run of this many characters from a training line


class NoveltyGuard:
    """Knows the training lines and spans; counts copies and names the tokens that would make one."""

    def __init__(self, train_text: str, vocab: Vocab, line_chars: int = LINE_CHARS, span_chars: int = SPAN_CHARS):
        self.span_chars = span_chars
        lines = [line for line in train_text.split(NEWLINE) if line]
        self.lines = {line for line in lines if len(line) >= line_chars}
        # prefix of a training line -> tokens that would finish it
        self.line_ends: dict[str, set[int]] = defaultdict(set)
        for line in self.lines:
            for cut in range(len(line) - 1, 0, -1):
                token = vocab.stoi.get(line[cut:])
                if token is not None:
                    self.line_ends[line[:cut]].add(token)
        # A token t appended to a line L completes a training span when, for some i <= len(t),
        # L[-(span-i):] + t[:i] is one. Index spans by their first span-i characters.
        self.max_token_chars = min(span_chars - 1, max((len(t) for t in vocab.itos), default=1))
        self.span_ends: list[dict[str, set[str]]] = [defaultdict(set) for _ in range(self.max_token_chars + 1)]
        for line in lines:
            for start in range(len(line) - span_chars + 1):
                span = line[start : start + span_chars]
                for i in range(1, self.max_token_chars + 1):
                    self.span_ends[i][span[:-i]].add(span[-i:])
        self.tokens_starting: dict[str, list[int]] = defaultdict(list)
        for token_id, token in enumerate(vocab.itos):
            if token != NEWLINE:
                for i in range(1, min(len(token), self.max_token_chars) + 1):
                    self.tokens_starting[token[:i]].append(token_id)
        self.newline_id = vocab.stoi.get(NEWLINE, vocab.unk_id)
        self._memo: dict[tuple[int, str], frozenset[int]] = {}  # dict writes are atomic: threads may share it

    def copied(self, text: str) -> list[str]:
        """The song's lines that are verbatim training lines."""
        return [line for line in text.split(NEWLINE) if line in self.lines]

    def forbidden(self, line: str) -> tuple[int, ...]:
        """Tokens that, written after ``line`` (the current line so far), would copy a line or a span."""
        spans = self._completing_spans(line[-(self.span_chars - 1) :])
        ends = self.line_ends.get(line)
        if ends is None and line not in self.lines:
            return spans
        tokens = set(spans) | (ends or set())
        if line in self.lines:
            tokens.add(self.newline_id)
        return tuple(sorted(tokens))

    @functools.lru_cache(maxsize=16384)  # noqa: B019 - one guard per loaded bundle, kept for its lifetime
    def _completing_spans(self, tail: str) -> tuple[int, ...]:
        """Tokens that would complete a training span after a line ending in ``tail`` (its last span - 1
        characters, or the whole line if shorter: nothing before them can be part of the span)."""
        tokens: set[int] = set()
        # i characters of the next token complete the span: the line must supply the other span - i.
        for i in range(max(1, self.span_chars - len(tail)), self.max_token_chars + 1):
            tokens.update(self._completing(i, tail[len(tail) - (self.span_chars - i) :]))
        return tuple(sorted(tokens))

    def _completing(self, i: int, start: str) -> frozenset[int]:
        """Tokens whose first i characters complete a training span that begins with ``start``; memoised for
        good (a few thousand starts), as most lines end in one already seen."""
        key = (i, start)
        found = self._memo.get(key)
        if found is None:
            found = frozenset(
                token for end in self.span_ends[i].get(start, ()) for token in self.tokens_starting.get(end, ())
            )
            self._memo[key] = found
        return found
