"""Helpers for error messages that fit on one line (the CLI prints one line on stderr, never a traceback)."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type's name if it has none), at most `limit` characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
