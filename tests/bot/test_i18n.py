"""The catalogues: every key in every language, with the same placeholders; the locale picks the language."""

from __future__ import annotations

import string

import discord
import pytest

from bot import i18n


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


@pytest.mark.parametrize("language", [name for name in i18n.LANGUAGES if name != i18n.FALLBACK])
def test_every_key_is_in_every_language_with_the_same_placeholders(language: str) -> None:
    english, other = i18n.catalogue(i18n.FALLBACK), i18n.catalogue(language)
    assert sorted(set(english) - set(other)) == [], f"missing in {language}"
    assert sorted(set(other) - set(english)) == [], f"only in {language}"
    differ = {key: (placeholders(english[key]), placeholders(other[key])) for key in english}
    assert {key: pair for key, pair in differ.items() if pair[0] != pair[1]} == {}


def test_the_locale_picks_the_catalogue_and_english_is_the_fallback() -> None:
    assert i18n.language(discord.Locale.chinese) == "zh-CN"
    assert i18n.language("zh-TW") == "zh-TW"
    for other in (discord.Locale.american_english, discord.Locale.french, "xx-XX", None):
        assert i18n.language(other) == "en"
    assert i18n.text("zh-CN", "favourites.not_found", id=7).startswith("这里没有第 7 首歌")
    assert i18n.text("zh-TW", "favourites.not_found", id=7).startswith("這裡沒有第 7 首歌")
    assert i18n.text(discord.Locale.german, "favourites.not_found", id=7).startswith("There is no song #7 here")


def test_an_unknown_key_is_an_error_not_a_blank_reply() -> None:
    with pytest.raises(i18n.MissingTextError):
        i18n.text("en", "no.such.key")


def test_command_names_follow_discords_naming_rules() -> None:
    """Lowercase, 1-32 word characters or dashes, in every language (Discord refuses the whole sync otherwise)."""
    import re

    rule = re.compile(r"^[-_'\w]{1,32}$")
    for language in i18n.LANGUAGES:
        for key, value in i18n.catalogue(language).items():
            if key.startswith("commands.") and not key.endswith("description") and ".choice_" not in key:
                assert rule.match(value) and value == value.lower(), (language, key, value)


async def test_the_translator_gives_chinese_for_chinese_locales_only() -> None:
    translator = i18n.Translator()
    name = i18n.localized("commands.lyrics.name")
    context = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.command_name, None
    )
    assert str(name) == "lyrics"
    assert await translator.translate(name, discord.Locale.chinese, context) == "歌词"
    assert await translator.translate(name, discord.Locale.taiwan_chinese, context) == "歌詞"
    assert await translator.translate(name, discord.Locale.american_english, context) is None
