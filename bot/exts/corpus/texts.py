"""What /corpus says: the preview of an added file, the list, and removals. Fits Discord's 2,000 characters.

The words are the catalogues' (bot/locales/, `corpus.*`), in the language of the member who asked.
"""

from __future__ import annotations

import discord

from bot.corpora import MAX_UPLOAD_BYTES, Added, BaseCorpus, Entry, display_name
from bot.i18n import Locale, text
from bot.messages import CONTENT_LIMIT, cap, escape

NEW_WORDS_SHOWN = 12
SKIPPED_SHOWN = 5
SAMPLE_CHARS = 80


def code(value: str) -> str:
    """`value` as inline code: shown literally (escapes would show too), so only backticks must go."""
    return "`" + value.replace("`", "'") + "`"


def size(n: int) -> str:
    """1,234 bytes as "1.2 KB"; Discord members think in KB and MB."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def _count(locale: Locale, n: int, noun: str) -> str:
    """ "1 line", "2 lines": the catalogues' `corpus.n_<noun>_one` or `_other`."""
    return text(locale, f"corpus.n_{noun}_{'one' if n == 1 else 'other'}", count=n)


def added_text(locale: Locale, added: Added) -> str:
    """The answer to /corpus add: what was stored, what was left out, and a taste of it."""
    entry = added.entry
    source = ""
    if entry.source and entry.source != entry.name:
        source = text(locale, "corpus.from_source", source=code(entry.source))
    words = ""
    if added.new_words:
        shown = "、".join(escape(w) for w in added.new_words[:NEW_WORDS_SHOWN])
        more = "…" if len(added.new_words) > NEW_WORDS_SHOWN else ""
        words = f": {shown}{more}"
    head = text(
        locale,
        "corpus.added",
        name=code(entry.name),
        source=source,
        lines=_count(locale, entry.lines, "line"),
        characters=_count(locale, entry.chars, "character"),
        new_words=_count(locale, len(added.new_words), "new_word"),
        words=words,
    )
    lines = [head]
    dropped = []
    if added.duplicates:
        dropped.append(text(locale, "corpus.duplicates", lines=_count(locale, added.duplicates, "duplicate_line")))
    if added.unreadable:
        dropped.append(text(locale, "corpus.unreadable", lines=_count(locale, added.unreadable, "line")))
    if added.invisible:
        dropped.append(text(locale, "corpus.invisible", lines=_count(locale, added.invisible, "line")))
    if dropped:
        lines.append(text(locale, "corpus.left_out", what="; ".join(dropped)))
    if added.skipped:
        shown = "; ".join(escape(s) for s in added.skipped[:SKIPPED_SHOWN])
        rest = len(added.skipped) - SKIPPED_SHOWN
        more = text(locale, "corpus.more", count=rest) if rest > 0 else ""
        lines.append(text(locale, "corpus.not_read", shown=shown, more=more))
    lines.append(text(locale, "corpus.sample_lines"))
    lines += [f"> {escape(cap(line, SAMPLE_CHARS))}" for line in added.samples]
    lines.append(text(locale, "corpus.next_train"))
    return cap("\n".join(lines), CONTENT_LIMIT)


def list_text(locale: Locale, base: BaseCorpus | str, entries: list[Entry], limit: int = CONTENT_LIMIT) -> str:
    """/corpus list: the base corpus (or why it cannot be read) and every added file, as many as fit."""
    footer = text(locale, "corpus.list_footer")
    if isinstance(base, str):
        head = text(locale, "corpus.base_cannot_read", error=escape(base))
    else:
        head = text(
            locale,
            "corpus.base",
            name=code(base.path.name),
            lines=_count(locale, base.lines, "line"),
            characters=_count(locale, base.chars, "character"),
            size=size(base.size),
        )
        if base.sample:
            head += "\n" + text(locale, "corpus.sample_note")
    if not entries:
        return head + text(locale, "corpus.nothing_added") + footer
    total = sum(e.lines for e in entries)
    files, lines = _count(locale, len(entries), "file"), _count(locale, total, "line")
    parts = [head, text(locale, "corpus.added_head", files=files, lines=lines)]
    rows = [_entry_line(locale, e) for e in entries]
    room = limit - len(footer) - sum(len(p) + 1 for p in parts) - 40
    for i, row in enumerate(rows):
        if len(row) + 1 > room:
            parts.append(text(locale, "corpus.more_entries", count=len(rows) - i))
            break
        parts.append(row)
        room -= len(row) + 1
    return "\n".join(parts) + footer


def _entry_line(locale: Locale, entry: Entry) -> str:
    if entry.added_by:
        who = text(locale, "corpus.added_by", name=escape(entry.added_by.name))
    else:
        who = text(locale, "corpus.no_record")
    when = f" {discord.utils.format_dt(entry.added_at, 'R')}" if entry.added_at else ""
    counts = f"{_count(locale, entry.lines, 'line')}, {_count(locale, entry.chars, 'character')} ({size(entry.size)})"
    return f"• {code(entry.name)}: {counts}{who}{when}"


def removed_text(locale: Locale, entry: Entry) -> str:
    return text(locale, "corpus.removed", name=code(entry.name), lines=_count(locale, entry.lines, "line"))


def could_not_download(locale: Locale, error: object) -> str:
    return text(locale, "corpus.could_not_download", error=error)


def download_refused(locale: Locale, filename: str, error: object) -> str:
    name = f"`{display_name(filename)}`"
    return text(locale, "corpus.download_refused", name=name, error=error, size=size(MAX_UPLOAD_BYTES))


def not_added(locale: Locale, reason: str) -> str:
    return text(locale, "corpus.not_added", reason=reason)
