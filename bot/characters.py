"""Which characters the bot refuses in text members give it: the one rule for a /lyrics seed and a /corpus add file.

Some characters render as nothing (zero-width spaces, Hangul fillers, the braille blank), display text
reversed (bidirectional overrides), or stack without end (combining marks): text made of them looks like
words, or like nothing, and neither a seed nor a corpus line can be one.

    characters_problem("窗外的麻雀", "seed", locale)   # None: plain text; else why not, in the member's language
    is_visible("\u3164")                                 # False: a Hangul filler draws nothing
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from bot import i18n
from bot.i18n import Locale

# Letters that render as nothing (Hangul fillers, the braille blank): invisible text, like a zero-width space.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Unicode categories refused: controls, format characters (zero-width spaces and joiners, bidirectional
# overrides, soft hyphens, tags), private use, surrogates and unassigned code points. None of them is a
# word a song could hold; all can hide or fake text.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
MAX_COMBINING_RUN = 3  # marks on one letter; real scripts stack two or three, "Zalgo" text dozens


@dataclass(frozen=True)
class CharactersRefusal:
    """Why a text's characters are refused, as a catalogue key and its values: `render` puts it in words.
    bot.corpora keeps one in its refusal, so the /corpus cog says it in the member's language."""

    key: str  # characters.refused or characters.stacked
    values: dict[str, object] = field(default_factory=dict)

    def render(self, locale: Locale, what: str = "seed") -> str:
        """The sentence in `locale`'s language; `what` names the text: "seed" or "line"."""
        values = {**self.values, "what": i18n.text(locale, f"characters.{what}")}
        if "kind" in values:
            values["kind"] = i18n.text(locale, f"characters.kind_{values['kind']}")
        return i18n.text(locale, self.key, **values)


def refused_kind(ch: str) -> str | None:
    """What `ch` is, if the rule refuses it: its category in lower case ("cc", "cf"...), "blank" for a letter
    that draws nothing; None if it is allowed. The catalogues name each: characters.kind_<kind>."""
    category = unicodedata.category(ch)
    if category in REFUSED_CATEGORIES:
        return category.lower()
    return "blank" if ch in BLANK_LETTERS else None


def is_visible(ch: str) -> bool:
    """Whether `ch` draws something: not a space, not a character the rule refuses."""
    return not ch.isspace() and refused_kind(ch) is None


def characters_refusal(text: str) -> CharactersRefusal | None:
    """Why `text`'s characters are refused (invisible, formatting, private-use, stacked marks), or None."""
    run = 0
    for ch in text:
        if (kind := refused_kind(ch)) is not None:
            return CharactersRefusal("characters.refused", {"kind": kind, "char": describe(ch)})
        run = run + 1 if unicodedata.combining(ch) or unicodedata.category(ch) == "Me" else 0
        if run > MAX_COMBINING_RUN:
            return CharactersRefusal("characters.stacked", {"limit": MAX_COMBINING_RUN, "char": describe(ch)})
    return None


def characters_problem(text: str, what: str = "seed", locale: Locale = None) -> str | None:
    """Why `text`'s characters are refused, in a sentence in `locale`'s language, or None.

    `what` names the text in the sentence: "seed" ("The seed contains an invisible character (U+3164 ...)")
    or "line" ("A line contains ...").
    """
    refusal = characters_refusal(text)
    return refusal.render(locale, what) if refusal is not None else None


def describe(ch: str) -> str:
    """`ch` for a message: its code point and name, e.g. "U+3164 HANGUL FILLER"."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"
