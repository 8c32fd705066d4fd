"""/corpus add | list | remove end to end: the real bot on the fake Discord, files attached as members attach them.

The fake serves each attachment on loopback and sends it in the interaction's `resolved` data, as Discord
does; the bot downloads it through discord.py (Attachment.read). The base corpus is the committed sample.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot import i18n
from bot.corpora import MAX_UPLOAD_BYTES, Corpora, Uploader, check_attachment, safe_stem
from model.checkpoint import BUNDLE_FORMAT, atomic_save, load_bundle, safe_load
from model.corpus import load_corpus
from tests.bot.exts.test_training import ADMINISTRATOR, has, live_bundle, training_env
from tests.fakediscord import Attachment, FakeDiscord, Interaction
from tests.helpers import SAMPLE_CORPUS

OWNER_ONLY = i18n.text("en", "errors.owner_only")

NEW_LINES = ["麒麟飞过琥珀色的海", "琥珀色的海上有麒麟", "风吹过青石板的小巷", "小巷尽头有一把旧吉他"]
SAMPLE_LINE = SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()[0]


def lyrics(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def stored(folder: Path) -> list[str]:
    """Every file in the corpora folder (records, texts, anything left behind), sorted."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def corpus_env(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {"LYRICS_CORPORA": tmp_path / "corpora", "LYRICS_COOLDOWN": 0, **overrides}  # as bot_env, said here


async def owner_command(fake: FakeDiscord, name: str, options: dict | None = None, **kw: Any) -> Interaction:
    # The application's owner, who is also an Administrator here: allowed whichever of the two the check wants.
    return await fake.send_slash_command(name, options, user=fake.owner, permissions=ADMINISTRATOR, **kw)


async def ephemeral_text(inter: Interaction) -> str:
    """The text of the answer only the member who asked sees: at once (type 4) or after "thinking…" (type 5)."""
    message = await inter.wait_final(timeout=30)
    assert inter.response_type in (4, 5) and message is not None and message.ephemeral, inter
    return message.content


async def add(fake: FakeDiscord, attachment: Attachment) -> str:
    return await ephemeral_text(await owner_command(fake, "corpus add", {"file": attachment}))


async def test_add_list_and_remove(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    folder = tmp_path / "corpora"
    async with start_bot(**corpus_env(tmp_path)):
        command, _ = fake_discord.find_command("corpus", fake_discord.guild["id"])
        [add_command] = [sub for sub in command["options"] if sub["name"] == "add"]
        assert add_command["options"][0]["type"] == 11 and add_command["options"][0]["required"]  # an attachment

        upload = fake_discord.upload("七里香 (live).txt", lyrics(*NEW_LINES, SAMPLE_LINE, NEW_LINES[0]))
        text = await add(fake_discord, upload)
        assert fake_discord.downloads == [upload.id]
        assert text.startswith("**Added `七里香_live.txt`** (from `七里香 (live).txt`)")
        assert "4 lines, 41 characters" in text and "2 duplicate lines" in text
        new_words = text.split("new words: ")[1].split(".")[0].split("、")
        assert {"麒麟", "琥珀色", "青石板"} <= set(new_words)
        assert not {"的", "风", "有"} & set(new_words)  # words the sample has
        assert [line for line in text.splitlines() if line.startswith("> ")] == [
            "> 麒麟飞过琥珀色的海",
            "> 琥珀色的海上有麒麟",
            "> 风吹过青石板的小巷",
        ]
        assert stored(folder) == ["七里香_live.json", "七里香_live.txt"]
        assert (folder / "七里香_live.txt").read_text(encoding="utf-8") == "\n".join(NEW_LINES) + "\n"
        record = json.loads((folder / "七里香_live.json").read_text(encoding="utf-8"))
        assert record["added_by"] == {"id": int(fake_discord.owner["id"]), "name": "Owner"}
        assert record["added_at"] and record["source"] == "七里香 (live).txt" and record["lines"] == 4

        # The same name again: a second file, never a replacement.
        again = fake_discord.upload("七里香 (live).txt", lyrics("另一首歌的第一行", "另一首歌的第二行"))
        assert (await add(fake_discord, again)).startswith("**Added `七里香_live-2.txt`**")

        listing = await ephemeral_text(await owner_command(fake_discord, "corpus list"))
        assert listing.startswith("**Base corpus** `sample_lyrics.txt`: ")
        assert "bundled sample" in listing and "python -m model fetch" in listing
        assert "**Added from chat** (2 files, 6 lines; training only):" in listing
        assert "• `七里香_live.txt`: 4 lines, 41 characters (115 bytes) · added by Owner <t:" in listing
        assert "• `七里香_live-2.txt`: 2 lines" in listing

        typing = await fake_discord.send_autocomplete(
            "corpus remove", {"name": "live-"}, "name", user=fake_discord.owner, permissions=ADMINISTRATOR
        )
        choices = (await typing.wait_response())["data"]["choices"]
        assert choices == [{"name": "七里香_live-2.txt", "value": "七里香_live-2.txt"}]

        removed = await ephemeral_text(await owner_command(fake_discord, "corpus remove", {"name": "七里香_live.txt"}))
        assert removed.startswith("Removed `七里香_live.txt` (4 lines)") and "next `/train start`" in removed
        assert stored(folder) == ["七里香_live-2.json", "七里香_live-2.txt"]
        for name in ("七里香_live.txt", "../七里香_live-2.txt", "sample_lyrics.txt"):
            refused = await ephemeral_text(await owner_command(fake_discord, "corpus remove", {"name": name}))
            assert refused.startswith("There is no added file called"), name
        assert stored(folder) == ["七里香_live-2.json", "七里香_live-2.txt"] and SAMPLE_CORPUS.is_file()


async def test_non_owners_are_refused(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    folder = tmp_path / "corpora"
    async with start_bot(**corpus_env(tmp_path)):
        await add(fake_discord, fake_discord.upload("mine.txt", lyrics(*NEW_LINES)))
        upload = fake_discord.upload("theirs.txt", lyrics("不速之客写的歌"))
        member = fake_discord.user  # no Administrator permission, not the application's owner
        for name, options in [
            ("corpus add", {"file": upload}),
            ("corpus list", None),
            ("corpus remove", {"name": "mine.txt"}),
        ]:
            refusal = await ephemeral_text(await fake_discord.send_slash_command(name, options, user=member))
            assert refusal.startswith("Only"), (name, refusal)
            # An Administrator of this server is not one of the bot's owners either: the model is shared.
            inter = await fake_discord.send_slash_command(name, options, user=member, permissions=ADMINISTRATOR)
            assert (await ephemeral_text(inter)) == OWNER_ONLY, name
        typing = await fake_discord.send_autocomplete("corpus remove", {"name": ""}, "name", user=member)
        assert (await typing.wait_response())["data"]["choices"] == []  # not even the names
        assert upload.id not in fake_discord.downloads  # the file was never fetched
        assert stored(folder) == ["mine.json", "mine.txt"]


def gbk_with_a_stray_byte() -> bytes:
    good = lyrics(*(f"第{i}行歌词在这里" for i in range(20))).decode().encode("gbk")
    cut = good.index("第7行".encode("gbk"))
    return good[:cut] + b"\xff" + good[cut:]


# (file name, bytes, declared size or None, what the answer starts with or holds, whether it is stored as)
HOSTILE = [
    ("../../../evil.txt", lyrics("路径之外的歌"), None, "**Added `evil.txt`**", "evil.txt"),
    ("C:\\Users\\jay\\win.txt", lyrics("窗户里的歌"), None, "**Added `win.txt`**", "win.txt"),
    ("bomb.zip", zip_of({"bomb.txt": "哈\n".encode() * (2 << 20)}), None, "unpacks to 8,388,608 bytes", None),
    ("many.zip", zip_of({f"{i}.txt": f"第{i}首\n".encode() for i in range(201)}), None, "holds 201 files", None),
    (
        "nested.zip",
        zip_of({"inner.zip": zip_of({"a.txt": lyrics("里面的歌")})}),
        None,
        "holds no .txt file (left out: inner.zip (a zip inside the zip, not unpacked))",
        None,
    ),
    (
        "mixed.zip",
        zip_of(
            {
                "cover.jpg": b"\xff\xd8\xff\xe0" + bytes(64),
                "inner.zip": zip_of({"a.txt": lyrics("里面的歌")}),
                "songs/good.txt": lyrics("压缩包里的好歌"),
            }
        ),
        None,
        "Not read from the zip: cover.jpg (not a .txt file); inner.zip (a zip inside the zip, not unpacked).",
        "mixed.txt",
    ),
    ("photos.zip", zip_of({"a.png": b"\x89PNG\r\n\x1a\n"}), None, "holds no .txt file", None),
    ("stray.txt", gbk_with_a_stray_byte(), None, "1 line with bytes that are neither UTF-8 nor GBK", "stray.txt"),
    (
        "chorus.txt",
        lyrics("副歌一直重复副歌一直重复") * (MAX_UPLOAD_BYTES // 37 - 1),
        None,
        "**Added `chorus.txt`**: 1 line, 13 characters",
        "chorus.txt",
    ),
    ("huge.txt", b"x", MAX_UPLOAD_BYTES + 1, "is 2.0 MB; a corpus file may be at most 2 MB", None),
    ("liar.txt", lyrics("说谎的大小") * 200_000, 100, "the file sends more than 2,097,152 bytes", None),
    # Letters that draw nothing, as /lyrics refuses them in a seed: no line of it is text.
    ("blank-letters.txt", "\u3164\u3164\n\u2800\n\uffa0\u115f\u1160\n".encode(), None, "no line of plain text", None),
    ("nothing.txt", b"", None, "`nothing.txt` is empty", None),
    ("blank.txt", " \n\u3000\n\r\n".encode(), None, "holds no line of text", None),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), None, "a binary file, not text", None),
    ("song.pdf", b"%PDF-1.4", None, "is not a .txt file or a .zip of .txt files", None),
    ("again.txt", lyrics(SAMPLE_LINE), None, "Nothing new in `again.txt`", None),
]


async def test_every_hostile_file_is_handled(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    folder = tmp_path / "corpora"
    expected: list[str] = []
    answers: list[str] = []
    async with start_bot(**corpus_env(tmp_path)):
        for filename, data, declared, answer, stored_as in HOSTILE:
            upload = fake_discord.upload(filename, data, declared_size=declared)
            text = await add(fake_discord, upload)
            answers.append(text)
            assert answer in text, (filename, text)
            if stored_as is None:
                assert text.startswith("Not added: "), (filename, text)
            else:
                expected += [stored_as.replace(".txt", ".json"), stored_as]
            assert stored(folder) == sorted(expected), filename  # nothing else, no temp file left behind
            if filename in ("huge.txt", "nothing.txt", "song.pdf"):
                assert upload.id not in fake_discord.downloads, filename  # refused before downloading
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert (folder / "mixed.txt").read_text(encoding="utf-8") == "压缩包里的好歌\n"
    assert "U+3164 HANGUL FILLER" in next(t for t in answers if "blank-letters" in t)
    stray = (folder / "stray.txt").read_text(encoding="utf-8")
    assert stray.count("\n") == 19 and "第7行" not in stray and "第8行" in stray
    assert (folder / "chorus.txt").read_text(encoding="utf-8") == "副歌一直重复副歌一直重复\n"


async def test_a_refusal_is_in_the_members_language(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    """The refusal is bot.corpora's (no Discord there): the cog says it in the language of who asked."""
    async with start_bot(**corpus_env(tmp_path)):
        blank = fake_discord.upload("blank.txt", "\u3164\u3164\n".encode())
        refused = await ephemeral_text(await owner_command(fake_discord, "corpus add", {"file": blank}, locale="zh-CN"))
        why = "有一行含有不可见字符（U+3164 HANGUL FILLER）：请删掉它，输入普通文字。"
        assert refused == i18n.text("zh-CN", "corpus.not_added", reason=f"`blank.txt` 里没有一行普通文字：{why}"), (
            refused
        )
        gone = await owner_command(fake_discord, "corpus remove", {"name": "nope.txt"}, locale="zh-TW")
        assert await ephemeral_text(gone) == "沒有叫 `nope.txt` 的新增檔案：`/corpus list` 會列出它們。"
    assert stored(tmp_path / "corpora") == []


async def test_a_file_larger_than_it_says_is_cut_off_at_the_cap(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    """Declared 1 KB, served 50 MB (chunked, no length): the bot stops reading a little past 2 MB."""
    async with start_bot(**corpus_env(tmp_path)):
        liar = fake_discord.upload("liar.txt", b"x" * (50 << 20), declared_size=1024)
        text = await add(fake_discord, liar)
        assert text.startswith("Not added: `liar.txt` was not downloaded: the file sends more than"), text
        await fake_discord.wait_until(lambda: liar.id in fake_discord.served, what="the download")
    # What the bot read is the cap plus a chunk; what went out beyond that sits in the sockets' buffers.
    assert fake_discord.served[liar.id] < 20 << 20, fake_discord.served[liar.id]
    assert stored(tmp_path / "corpora") == []


async def test_attachments_are_fetched_only_from_discords_hosts(fake_discord: FakeDiscord, start_bot, tmp_path) -> None:
    async with start_bot(**corpus_env(tmp_path, LYRICS_ATTACHMENT_HOSTS=None)):  # the default: Discord's CDN
        upload = fake_discord.upload("elsewhere.txt", lyrics(*NEW_LINES))
        text = await add(fake_discord, upload)
    assert "is not on Discord's attachment servers (127.0.0.1)" in text, text
    assert upload.id not in fake_discord.downloads and stored(tmp_path / "corpora") == []


async def test_remove_defers_and_the_added_files_together_are_capped(
    fake_discord: FakeDiscord, start_bot, tmp_path
) -> None:
    async with start_bot(**corpus_env(tmp_path, LYRICS_CORPORA_MAX_BYTES=150)):
        assert (await add(fake_discord, fake_discord.upload("first.txt", lyrics(*NEW_LINES)))).startswith("**Added")
        refused = await add(
            fake_discord, fake_discord.upload("second.txt", lyrics("另一首歌的第一行", "另一首歌的第二行"))
        )
        assert refused.startswith("Not added: The files added from chat hold 115 bytes"), refused
        assert "at most 150 bytes" in refused and "/corpus remove" in refused
        removal = await owner_command(fake_discord, "corpus remove", {"name": "first.txt"})
        assert (await ephemeral_text(removal)).startswith("Removed `first.txt`")
        assert removal.response_type == 5  # deferred first: an upload being checked holds the lock for seconds
        assert (await add(fake_discord, fake_discord.upload("second.txt", lyrics("另一首歌的第一行")))).startswith(
            "**Added"
        )


@pytest.mark.slow
async def test_training_uses_the_added_text_and_rescores_a_live_model_from_another_corpus(
    fake_discord: FakeDiscord, start_bot, tiny_bundle, tmp_path
) -> None:
    # The live model was scored on another base corpus: its 0.5 says nothing about the sample's held-out text.
    model = live_bundle(tiny_bundle, tmp_path, bpc=0.5)
    raw = safe_load(model, BUNDLE_FORMAT)
    atomic_save({**raw, "corpus_sha256": "f" * 64}, model)
    sample_sha = load_corpus(SAMPLE_CORPUS).sha256
    async with start_bot(**training_env(model, LYRICS_CORPORA=tmp_path / "corpora")) as bot:
        await add(fake_discord, fake_discord.upload("qilin.txt", lyrics(*NEW_LINES)))
        inter = await owner_command(fake_discord, "train start", {"epochs": 1, "force": True})
        reply = await inter.wait_response()
        assert "on `sample_lyrics.txt` (the bundled sample" in reply["data"]["content"]
        assert "+ 1 added file" in reply["data"]["content"]
        final = await inter.wait_final(timeout=120, until=has("Training finished"))
        assert "Trained on the base corpus and 1 added file: `qilin.txt` (4 lines)" in final.content
        assert "so it was re-scored on the new model's: 0.500 there" in final.content, final.content
        rescored = float(final.content.split("0.500 there, ")[1].split(" here")[0])
        assert f"live model {rescored:.3f} → new model" in final.content
        live = bot.engine.info.bundle
        assert {"麒", "琥", "珀"} <= set(live.vocab)  # trained on the added text
        assert live.corpus_sha256 == sample_sha  # scored on the sample's held-out tail
        assert [(a["name"], a["lines"]) for a in live.added_corpora] == [("qilin.txt", 4)]
        info = await (await fake_discord.send_slash_command("model info")).wait_final()
        corpus_field = next(f["value"] for f in info.embeds[0]["fields"] if f["name"] == "Corpus")
        assert "+ added from chat: `qilin.txt` (4 lines)" in corpus_field
    assert load_bundle(model).added_corpora == live.added_corpora


# ---------------------------------------------------------------------------------------------
# the store's pure parts


@pytest.mark.parametrize(
    "filename, stem",
    [
        ("七里香.txt", "七里香"),
        ("../../etc/passwd.txt", "passwd"),
        ("C:\\lyrics\\晴天 (live).TXT", "晴天_live"),
        ("..", "lyrics"),
        ("***.zip", "lyrics"),
        ("a" * 100 + ".txt", "a" * 40),
        ("ｆｕｌｌ　ｗｉｄｔｈ.txt", "full_width"),
    ],
)
def test_stored_names_have_no_path_and_no_odd_characters(filename, stem) -> None:
    assert safe_stem(filename) == stem


def test_what_discord_says_of_a_file_decides_before_downloading() -> None:
    assert check_attachment("a.txt", 10) is None and check_attachment("A.ZIP", MAX_UPLOAD_BYTES) is None
    assert "at most 2 MB" in str(check_attachment("a.txt", MAX_UPLOAD_BYTES + 1))  # str(): the English
    assert "is empty" in str(check_attachment("a.txt", 0))
    assert "not a .txt file" in str(check_attachment("a.txt.exe", 10))
    assert "not a .txt file" in check_attachment("lyrics", 10).render("en")
    assert check_attachment("a.txt", 0).render("zh-TW") == "`a.txt` 是空的。"


def test_a_file_put_there_by_hand_is_listed_and_trained_on(tmp_path) -> None:
    folder = tmp_path / "corpora"
    folder.mkdir()
    (folder / "by-hand.txt").write_text("手放的歌\n第二行\n", encoding="utf-8")
    (folder / "orphan.json").write_text("{}", encoding="utf-8")  # a record whose text is gone: nothing to train
    corpora = Corpora(folder, SAMPLE_CORPUS)
    [entry] = corpora.entries()
    assert (entry.name, entry.lines, entry.added_by, entry.added_at) == ("by-hand.txt", 2, None, None)
    assert corpora.names() == ["by-hand.txt"]
    assert [a.name for a in load_corpus(SAMPLE_CORPUS, added=folder).added] == ["by-hand.txt"]
    # A new upload called "orphan" does not take the orphaned record's name.
    added = corpora.add("orphan.txt", lyrics("新的一行"), Uploader(1, "jay"))
    assert added.entry.name == "orphan-2.txt"
