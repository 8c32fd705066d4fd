"""What the bot says, in the member's language: one catalogue per language, and discord.py's Translator.

    text(interaction.locale, "lyrics.queued", place=12)   # "#12 in the queue: ..." / "排队中：第 12 位……"
    localized("commands.lyrics.description")               # a locale_str for a command's name or description

The catalogues are `bot/locales/<language>.toml`: English (`en`, the fallback), Simplified Chinese (`zh-CN`)
and Traditional Chinese (`zh-TW`). Each holds the same keys (tests/bot/test_i18n.py checks it), grouped in
tables (`[lyrics]` holds `lyrics.queued`); a value is a `str.format` template. Songs are never translated:
only what the bot says around them is.

Replies follow `interaction.locale`, the member's Discord language. Command names, descriptions, option
names and choices go to Discord as localizations when the commands are synced (`Translator`), so Discord
shows them in each member's language; it still sends the default (English) names back in interactions.
Messages that answer no interaction (a training run's progress, a direct message) use the locale of the
interaction that started them.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
FALLBACK = "en"
LANGUAGES = ("en", "zh-CN", "zh-TW")
# Discord's locales that have a catalogue of their own; every other one reads the fallback.
_BY_LOCALE = {discord.Locale.chinese: "zh-CN", discord.Locale.taiwan_chinese: "zh-TW"}

Locale = discord.Locale | str | None  # a discord.Locale, its value ("zh-CN"), or None for the fallback


class MissingTextError(KeyError):
    """A key that is in no catalogue, not even the fallback: a typo in the code."""


def language(locale: Locale) -> str:
    """The catalogue for a Discord locale: zh-CN, zh-TW, or English for every other one."""
    if isinstance(locale, str):
        try:
            locale = discord.Locale(locale)
        except ValueError:
            return FALLBACK
    return _BY_LOCALE.get(locale, FALLBACK) if locale is not None else FALLBACK


@functools.cache
def catalogue(name: str) -> dict[str, str]:
    """The texts of one language, keyed "table.key", read once from bot/locales/<name>.toml."""
    with (LOCALES_DIR / f"{name}.toml").open("rb") as file:
        return dict(_flatten(tomllib.load(file)))


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((prefix + key, str(value)))
    return items


def text(locale: Locale, key: str, /, **values: object) -> str:
    """The text `key` in the language of `locale` (English where it has none), filled with `values`."""
    template = catalogue(language(locale)).get(key)
    if template is None:
        template = catalogue(FALLBACK).get(key)
        if template is None:
            raise MissingTextError(key)
    return template.format(**values) if values else template


def locale_of(interaction: discord.Interaction | None) -> Locale:
    """The language to answer in: the member's, else (no interaction) the fallback."""
    return interaction.locale if interaction is not None else None


def localized(key: str) -> app_commands.locale_str:
    """A command's name, description, option or choice: English by default, localized by the `Translator`."""
    return app_commands.locale_str(text(FALLBACK, key), key=key)


class Translator(app_commands.Translator):
    """discord.py's hook for localizations: the catalogues' words for each `localized` string."""

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContext
    ) -> str | None:
        key = string.extras.get("key")
        name = language(locale)
        if key is None or name == FALLBACK:  # Discord shows the default (English) text
            return None
        return catalogue(name).get(key)
