"""What /corpus says: the preview of an added file, the list, and removals. Fits Discord's 2,000 characters."""

from __future__ import annotations

import discord

from bot.corpora import MAX_UPLOAD_BYTES, Added, BaseCorpus, Entry, display_name
from bot.messages import CONTENT_LIMIT, cap, escape

NEW_WORDS_SHOWN = 12
SKIPPED_SHOWN = 5
SAMPLE_CHARS = 80
LIST_FOOTER = "\n`/corpus add` adds a file, `/corpus remove` takes one out; `/train start` trains on all of them."
SAMPLE_NOTE = (
    "This is the bundled sample (lyrics we wrote ourselves), not Jay Chou's: run `python -m model fetch` on the "
    "bot's machine and restart the bot to use the real corpus."
)


def code(text: str) -> str:
    """`text` as inline code: shown literally (escapes would show too), so only backticks must go."""
    return "`" + text.replace("`", "'") + "`"


def size(n: int) -> str:
    """1,234 bytes as "1.2 KB"; Discord members think in KB and MB."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def added_text(added: Added) -> str:
    """The answer to /corpus add: what was stored, what was left out, and a taste of it."""
    entry = added.entry
    source = f" (from {code(entry.source)})" if entry.source and entry.source != entry.name else ""
    words = ""
    if added.new_words:
        shown = "、".join(escape(w) for w in added.new_words[:NEW_WORDS_SHOWN])
        more = "…" if len(added.new_words) > NEW_WORDS_SHOWN else ""
        words = f": {shown}{more}"
    lines = [
        f"**Added {code(entry.name)}**{source} (已添加): {_plural(entry.lines, 'line')}, "
        f"{_plural(entry.chars, 'character')}, {_plural(len(added.new_words), 'new word')}{words}."
    ]
    dropped = []
    if added.duplicates:
        dropped.append(
            f"{_plural(added.duplicates, 'duplicate line')} (already in the corpus, or repeated in the file)"
        )
    if added.unreadable:
        dropped.append(f"{_plural(added.unreadable, 'line')} with bytes that are neither UTF-8 nor GBK")
    if added.invisible:
        dropped.append(f"{_plural(added.invisible, 'line')} with invisible or control characters")
    if dropped:
        lines.append("Left out: " + "; ".join(dropped) + ".")
    if added.skipped:
        shown = "; ".join(escape(s) for s in added.skipped[:SKIPPED_SHOWN])
        more = f" and {len(added.skipped) - SKIPPED_SHOWN} more" if len(added.skipped) > SKIPPED_SHOWN else ""
        lines.append(f"Not read from the zip: {shown}{more}.")
    lines.append("Sample lines:")
    lines += [f"> {escape(cap(line, SAMPLE_CHARS))}" for line in added.samples]
    lines.append("The next `/train start` trains on it; the live model is unchanged until then.")
    return cap("\n".join(lines), CONTENT_LIMIT)


def list_text(base: BaseCorpus | str, entries: list[Entry], limit: int = CONTENT_LIMIT) -> str:
    """/corpus list: the base corpus (or why it cannot be read) and every added file, as many as fit."""
    if isinstance(base, str):
        head = f"**Base corpus**: cannot be read: {escape(base)}"
    else:
        head = (
            f"**Base corpus** {code(base.path.name)}: {_plural(base.lines, 'line')}, "
            f"{_plural(base.chars, 'character')} ({size(base.size)}). Its last lines are the held-out text "
            "every model is scored on."
        )
        if base.sample:
            head += "\n" + SAMPLE_NOTE
    if not entries:
        return head + "\n**Added from chat**: nothing yet." + LIST_FOOTER
    total = sum(e.lines for e in entries)
    parts = [head, f"**Added from chat** ({_plural(len(entries), 'file')}, {_plural(total, 'line')}; training only):"]
    rows = [_entry_line(e) for e in entries]
    room = limit - len(LIST_FOOTER) - sum(len(p) + 1 for p in parts) - 40
    for i, row in enumerate(rows):
        if len(row) + 1 > room:
            parts.append(f"… and {len(rows) - i} more.")
            break
        parts.append(row)
        room -= len(row) + 1
    return "\n".join(parts) + LIST_FOOTER


def _entry_line(entry: Entry) -> str:
    who = f" · added by {escape(entry.added_by.name)}" if entry.added_by else " · no record of who added it"
    when = f" {discord.utils.format_dt(entry.added_at, 'R')}" if entry.added_at else ""
    counts = f"{_plural(entry.lines, 'line')}, {_plural(entry.chars, 'character')} ({size(entry.size)})"
    return f"• {code(entry.name)}: {counts}{who}{when}"


def removed_text(entry: Entry) -> str:
    return (
        f"Removed {code(entry.name)} ({_plural(entry.lines, 'line')}) (已删除). "
        "The next `/train start` trains without it; the live model is unchanged until then."
    )


def could_not_download(error: object) -> str:
    return f"Could not download the file from Discord ({error}): try again."


def download_refused(filename: str, error: object) -> str:
    return (
        f"`{display_name(filename)}` was not downloaded: {error}. A corpus file may be at most"
        f" {size(MAX_UPLOAD_BYTES)}, attached to the command itself."
    )


def not_added(reason: str) -> str:
    return f"Not added (未添加): {reason}"
