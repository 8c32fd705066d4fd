"""The catalogues: every key in every language, with the same placeholders; the locale picks the language."""

from __future__ import annotations

import re
import string

import discord
import pytest

from bot import i18n
from bot.client import LyricsBot
from tests.bot.helpers import SEED, bob, ephemeral_text, write_song
from tests.fakediscord import FakeDiscord
from tests.fakediscord.rules import walk_components


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


# ---------------------------------------------------------------------------------------------
# through the Discord stand-in: the commands as synced, and replies in each member's language


async def test_the_synced_commands_carry_chinese_localizations(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    lyrics, _ = fake_discord.find_command("lyrics", fake_discord.guild["id"])
    assert lyrics is not None and lyrics["name"] == "lyrics"  # Discord's default, which interactions still carry
    assert lyrics["name_localizations"] == {"zh-CN": "歌词", "zh-TW": "歌詞"}
    assert lyrics["description"] == "Write lyrics in the style of Jay Chou"
    assert lyrics["description_localizations"]["zh-CN"] == "写一首周杰伦风格的歌词"
    assert lyrics["description_localizations"]["zh-TW"] == "寫一首周杰倫風格的歌詞"
    seed = next(o for o in lyrics["options"] if o["name"] == "seed")
    assert seed["name_localizations"] == {"zh-CN": "开头", "zh-TW": "開頭"}
    favourites, _ = fake_discord.find_command("favourites", fake_discord.guild["id"])
    top = next(o for o in favourites["options"] if o["name"] == "top")
    assert top["name_localizations"]["zh-CN"] == "排行榜"
    [period] = top["options"]
    assert [c["value"] for c in period["choices"]] == ["week", "month", "all"]
    assert [c["name_localizations"]["zh-TW"] for c in period["choices"]] == ["本週", "本月", "全部"]
    for name in ("train", "corpus", "model"):  # every command, the owners' too
        synced, _ = fake_discord.find_command(name, fake_discord.guild["id"])
        assert set(synced["name_localizations"]) == {"zh-CN", "zh-TW"}, name
    train, _ = fake_discord.find_command("train", fake_discord.guild["id"])
    start = next(o for o in train["options"] if o["name"] == "start")
    epochs = next(o for o in start["options"] if o["name"] == "epochs")
    assert epochs["description_localizations"]["zh-CN"].startswith("训练轮数")
    # Discord sends the default name whatever the member's language: the command answers in theirs.
    mine = await fake_discord.send_slash_command("favourites mine", locale="zh-CN")
    assert await ephemeral_text(mine) == "你还没有收藏：点歌下面的 ⭐ 即可收藏。"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", "There is no song #999 here"),
        ("en-GB", "There is no song #999 here"),  # no catalogue of its own: the fallback
        ("zh-CN", "这里没有第 999 首歌"),
        ("zh-TW", "這裡沒有第 999 首歌"),
    ],
)
async def test_a_reply_follows_the_members_language(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot, locale: str, expected: str
) -> None:
    inter = await fake_discord.send_slash_command("favourites show", {"id": 999}, locale=locale)
    assert (await ephemeral_text(inter)).startswith(expected)


async def test_a_refusal_from_on_error_is_in_the_members_language(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    """/train start by a member who is not an owner: the check fails, and on_error answers in their language."""
    answers = {}
    for locale in ("en-US", "zh-CN", "zh-TW"):
        inter = await fake_discord.send_slash_command("train start", {}, locale=locale)
        answers[locale] = await ephemeral_text(inter)
    assert answers["en-US"] == i18n.text("en", "errors.owner_only")
    assert answers["zh-CN"].startswith("只有机器人的所有者可以这样做")
    assert answers["zh-TW"].startswith("只有機器人的擁有者可以這樣做")


async def test_a_song_is_never_translated_only_the_words_around_it(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    english = await write_song(fake_discord, temperature=0.5)
    seed = english.embeds[0]["footer"]["text"].split("random seed ")[1].split()[0]
    chinese = await (
        await fake_discord.send_slash_command(
            "lyrics", {"seed": SEED, "length": 10, "temperature": 0.5}, user=bob(), locale="zh-CN"
        )
    ).wait_final(timeout=30)
    footer = chinese.embeds[0]["footer"]["text"]
    assert footer.startswith("温度 0.5 · 长度 10 · 随机种子 ") and "押" in footer, footer
    assert seed.isdigit()
    assert chinese.embeds[0]["description"].startswith(SEED)  # the song, as written: no translation


async def test_forget_me_asks_and_answers_in_the_members_language(
    fake_discord: FakeDiscord, lyrics_bot: LyricsBot
) -> None:
    user = bob()
    await write_song(fake_discord, user=user)
    question = await fake_discord.send_slash_command("favourites forget-me", user=user, locale="zh-TW")
    asked = await question.wait_final()
    assert asked.ephemeral and asked.content.startswith("這會永久刪除機器人儲存的關於你的一切："), asked.content
    labels = [c["label"] for c in walk_components(asked.components) if c.get("type") == 2]
    assert labels == ["刪除我的資料", "取消"]
    confirm = await fake_discord.click_button(asked, f"forget:{user['id']}:confirm", user=user, locale="zh-TW")
    await confirm.wait_response()
    done = await confirm.wait_final(timeout=30, until=lambda i: (i.content or "").startswith("已刪除。"))
    assert "• 你點的 1 首歌" in done.content, done.content


async def test_model_info_in_traditional_chinese(fake_discord: FakeDiscord, lyrics_bot: LyricsBot) -> None:
    inter = await fake_discord.send_slash_command("model info", locale="zh-TW")
    shown = await inter.wait_final(timeout=30, until=lambda i: i.embeds)
    [embed] = shown.embeds
    assert embed["title"] == "目前的模型"
    assert [f["name"] for f in embed["fields"]][:4] == ["網路", "訓練", "語料", "留出文字每字元位元數（越低越好）"]
    assert embed["footer"]["text"].startswith("模型包 "), embed["footer"]
