"""Which characters the bot refuses in text members give it: the one rule for a /lyrics seed and a /corpus add file.

Some characters render as nothing (zero-width spaces, Hangul fillers, the braille blank), display text
reversed (bidirectional overrides), or stack without end (combining marks): text made of them looks like
words, or like nothing, and neither a seed nor a corpus line can be one.

    characters_problem("窗外的麻雀")   # None: plain text
    is_visible("\u3164")               # False: a Hangul filler draws nothing
"""

from __future__ import annotations

import unicodedata

# Letters that render as nothing (Hangul fillers, the braille blank): invisible text, like a zero-width space.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Unicode categories refused: controls, format characters (zero-width spaces and joiners, bidirectional
# overrides, soft hyphens, tags), private use, surrogates and unassigned code points. None of them is a
# word a song could hold; all can hide or fake text.
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Co": "a private-use character",
    "Cs": "a broken (surrogate) character",
    "Cn": "an unassigned character",
}
MAX_COMBINING_RUN = 3  # marks on one letter; real scripts stack two or three, "Zalgo" text dozens


def refused_kind(ch: str) -> str | None:
    """What `ch` is, if the rule refuses it ("an invisible character", "a control character"...), else None."""
    what = REFUSED_CATEGORIES.get(unicodedata.category(ch))
    if what is None and ch in BLANK_LETTERS:
        what = "an invisible character"
    return what


def is_visible(ch: str) -> bool:
    """Whether `ch` draws something: not a space, not a character the rule refuses."""
    return not ch.isspace() and refused_kind(ch) is None


def characters_problem(text: str, what: str = "The seed") -> str | None:
    """Why `text`'s characters are refused (invisible, formatting, private-use, stacked marks), or None.

    `what` names the text in the sentence ("The seed contains an invisible character (U+3164 ...)").
    """
    run = 0
    for ch in text:
        if (kind := refused_kind(ch)) is not None:
            return f"{what} contains {kind} ({describe(ch)}): remove it and type plain text."
        run = run + 1 if unicodedata.combining(ch) or unicodedata.category(ch) == "Me" else 0
        if run > MAX_COMBINING_RUN:
            return (
                f"{what} stacks more than {MAX_COMBINING_RUN} combining marks on one character "
                f"(e.g. {describe(ch)}): type plain text."
            )
    return None


def describe(ch: str) -> str:
    """`ch` for a message: its code point and name, e.g. "U+3164 HANGUL FILLER"."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"
