import hashlib
import io
import zipfile

import pytest

from model.config import TrainConfig
from model.corpus import (
    FETCHED_CORPUS,
    SAMPLE_CORPUS,
    CorpusError,
    ZipLimits,
    decode_text,
    default_corpus,
    is_sample,
    load_corpus,
    normalise,
    read_texts,
    read_zip,
    split_lines,
)
from tests.helpers import SAMPLE_CORPUS as SAMPLE_REFERENCE


def test_gbk_file_inside_zip_is_decoded(tmp_path):
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a_utf8.txt", "窗外的雨\n".encode())
        z.writestr("b_gbk.txt", "街角的麻雀\n".encode("gbk"))
        z.writestr("notes.md", "ignored")
    texts = dict(read_texts(archive))
    assert list(texts.values()) == ["窗外的雨\n", "街角的麻雀\n"]
    assert load_corpus(archive, heldout_fraction=0.5).text == "窗外的雨\n街角的麻雀\n"


def test_utf8_bom_is_not_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff第一行\n第二行\n".encode("utf-8"))
    assert read_texts(path)[0][1] == "第一行\n第二行\n"


def test_undecodable_file_is_named(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("good.txt", "好\n".encode())
        z.writestr("broken.txt", b"\xff\xfe\xff\x80\x80")
    with pytest.raises(CorpusError, match=r"broken\.txt.*not UTF-8 or GBK"):
        load_corpus(archive)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.txt", "no such file"),
        (lambda p: (p / "empty.txt").write_text("  \n\r\n\u3000\n") and p / "empty.txt", "empty"),
        (lambda p: p, "is a folder"),
    ],
)
def test_bad_corpora_are_refused(tmp_path, make, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(make(tmp_path))


def test_zip_without_txt_is_refused(tmp_path):
    archive = tmp_path / "none.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.md", "no lyrics here")
    with pytest.raises(CorpusError, match=r"holds no \.txt"):
        load_corpus(archive)


def test_corrupt_zip_is_refused(tmp_path):
    archive = tmp_path / "cut.zip"
    archive.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CorpusError):
        load_corpus(archive)


def test_normalise_line_breaks_spaces_and_control_characters():
    raw = "第一行\r\n第\u3000二  行\x07\r\r\n\t第三行 \x00\n"
    assert normalise(raw) == "第一行\n第 二 行\n第三行\n"


def test_heldout_is_the_contiguous_tail():
    text = "".join(f"第{i}行\n" for i in range(100))
    train, heldout = split_lines(text, 0.1)
    assert train + heldout == text
    assert heldout == "".join(f"第{i}行\n" for i in range(90, 100))


def test_split_leaks_nothing_beyond_the_corpus_own_repeats():
    # Songs with a repeated chorus: held-out lines seen in training must be exactly the repeated ones.
    songs = []
    for s in range(20):
        chorus = [f"副歌{s}甲\n", f"副歌{s}乙\n"]
        songs += [f"歌{s}行{i}\n" for i in range(3)] + chorus + [f"歌{s}尾\n"] + chorus
    text = "".join(songs)
    train, heldout = split_lines(text, 0.1)
    train_lines = set(train.splitlines())
    leaked = [line for line in heldout.splitlines() if line in train_lines]
    repeated_across_split = [
        line for line in heldout.splitlines() if text.count(line + "\n") > 1 and line in train_lines
    ]
    assert leaked == repeated_across_split
    # Every held-out line that appears in training is a chorus of the song the cut falls in.
    assert all(line.startswith("副歌") for line in leaked)


def test_too_short_corpus_is_refused():
    with pytest.raises(CorpusError, match="too few"):
        split_lines("一行\n", 0.1)


# ---------------------------------------------------------------------------------------------
# stray bytes, binary files, hostile zips


def gbk_with_stray_bytes(lines: int = 40) -> bytes:
    good = "".join(f"窗外的麻雀第{i}次在电线杆上多嘴\n" for i in range(lines)).encode("gbk")
    cut = good.index("第3次".encode("gbk"))
    return good[:cut] + b"\x80" + good[cut:]  # one byte no GBK character starts or ends with


def test_a_gbk_file_with_a_stray_byte_loses_only_that_line():
    decoded = decode_text(gbk_with_stray_bytes(), "stray.txt")
    assert (decoded.encoding, decoded.dropped_lines) == ("gbk", 1)
    assert "第3次" not in decoded.text and decoded.text.count("\n") == 39
    assert "第2次" in decoded.text and "第4次" in decoded.text and "\ufffd" not in decoded.text


def test_a_mostly_unreadable_file_is_refused_with_the_first_bad_line():
    raw = "".join(f"第{i}行\n" for i in range(10)).encode("gbk")
    raw = b"\x80".join(raw.split(b"\n")[:6]) + b"\n" + b"\n".join(raw.split(b"\n")[6:])
    with pytest.raises(
        CorpusError, match=r"bad\.txt: not UTF-8 or GBK text \(\d+ of \d+ lines unreadable, the first is"
    ):
        decode_text(raw, "bad.txt")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
        "窗外的麻雀\n".encode("utf-16"),
        bytes(range(1, 32)) * 10 + "窗外\n".encode(),
    ],
    ids=["png", "utf-16", "control bytes"],
)
def test_binary_files_are_refused(raw):
    with pytest.raises(CorpusError, match="a binary file, not text"):
        decode_text(raw, "x.txt")


def zip_of(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_by_its_declared_size():
    bomb = zip_of({"big.txt": b"a\n" * (5 << 20)})  # 10 MB of text in about 10 KB
    assert len(bomb) < 50_000
    with pytest.raises(CorpusError, match=r"unpacks to 10,485,760 bytes; at most 1,000,000"):
        read_zip(bomb, "bomb.zip", ZipLimits(members=10, total_bytes=1_000_000))


def test_a_zip_of_too_many_files_is_refused():
    many = zip_of({f"{i}.txt": b"x\n" for i in range(11)})
    with pytest.raises(CorpusError, match=r"holds 11 files; at most 10"):
        read_zip(many, "many.zip", ZipLimits(members=10, total_bytes=1_000_000))


def test_a_zip_that_lies_about_its_size_is_refused():
    honest = zip_of({"a.txt": "窗外的麻雀\n".encode() * 1000}, compression=zipfile.ZIP_STORED)
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    size = len("窗外的麻雀\n".encode() * 1000).to_bytes(4, "little")
    lying = honest.replace(size, (10).to_bytes(4, "little"))
    # zipfile reads no further than the declared size, so the check of the declared total holds, and the
    # checksum then tells the lie.
    with pytest.raises(CorpusError, match=r"lying\.zip: not a readable zip file \(Bad CRC-32 for file 'a\.txt'\)"):
        read_zip(lying, "lying.zip", ZipLimits(members=10, total_bytes=1_000))


def test_nested_zips_and_other_members_are_skipped_and_named():
    inner = zip_of({"inner.txt": "里面的歌\n".encode()})
    archive = read_zip(
        zip_of(
            {
                "../../escape/a.txt": "窗外的麻雀\n".encode(),
                "inner.zip": inner,
                "disguised.txt": inner,
                "cover.jpg": b"\xff\xd8\xff",
                "__MACOSX/._a.txt": b"\x00\x05",
                "notes/": b"",
            }
        ),
        "upload.zip",
    )
    assert [t.text for t in archive.texts] == ["窗外的麻雀\n"]  # the path in a member's name is never a path here
    assert archive.skipped == [
        "cover.jpg (not a .txt file)",
        "disguised.txt (a zip inside the zip, not unpacked)",
        "inner.zip (a zip inside the zip, not unpacked)",
    ]


def test_a_binary_member_names_itself():
    with pytest.raises(CorpusError, match=r"up\.zip:b\.txt: a binary file"):
        read_zip(zip_of({"a.txt": "好\n".encode(), "b.txt": b"\x00\x01\x02"}), "up.zip")


# ---------------------------------------------------------------------------------------------
# added texts join the training part only


def test_added_texts_join_training_and_leave_the_heldout_tail_alone(tmp_path):
    base = tmp_path / "base.txt"
    base.write_text("".join(f"基础第{i}行\n" for i in range(100)), encoding="utf-8")
    plain = load_corpus(base)
    folder = tmp_path / "corpora"
    folder.mkdir()
    # New lines, a line of the training part, a line of the held-out tail, and a repeat across files.
    (folder / "a.txt").write_text("新的一行\n基础第3行\n基础第95行\n重复的行\n", encoding="utf-8")
    (folder / "b.txt").write_bytes("重复的行\n另一行\n".encode("gbk"))
    (folder / ".a.txt.123.tmp").write_text("半个文件\n", encoding="utf-8")  # a write in progress
    (folder / "notes.md").write_text("not lyrics\n", encoding="utf-8")
    both = load_corpus(base, added=folder)
    assert both.heldout == plain.heldout and both.dev == plain.dev and both.test == plain.test
    assert both.sha256 == plain.sha256  # the hash names the held-out text: the base corpus'
    assert both.train == "新的一行\n重复的行\n另一行\n" + plain.train  # added lines first, the tail's context stays
    assert [(a.name, a.lines) for a in both.added] == [("a.txt", 2), ("b.txt", 1)]
    assert both.added[0].sha256 == hashlib.sha256("新的一行\n基础第3行\n基础第95行\n重复的行\n".encode()).hexdigest()
    assert load_corpus(base, added=[folder / "b.txt"]).train.startswith("重复的行\n另一行\n")


def test_a_missing_folder_of_added_texts_is_named(tmp_path):
    base = tmp_path / "base.txt"
    base.write_text("".join(f"第{i}行\n" for i in range(20)), encoding="utf-8")
    with pytest.raises(CorpusError, match="no such folder of added texts"):
        load_corpus(base, added=tmp_path / "nowhere")


def test_the_default_corpus_is_the_fetched_one_else_the_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_corpus() == SAMPLE_CORPUS
    assert TrainConfig().corpus == str(SAMPLE_CORPUS)
    FETCHED_CORPUS.parent.mkdir(parents=True)
    FETCHED_CORPUS.write_bytes(b"PK")
    assert default_corpus() == FETCHED_CORPUS
    assert TrainConfig().corpus == str(FETCHED_CORPUS)
    assert TrainConfig(corpus="mine.txt").corpus == "mine.txt"
    assert is_sample(SAMPLE_REFERENCE) and not is_sample(FETCHED_CORPUS)  # the checkout's sample, from anywhere


def test_the_held_out_tail_splits_into_dev_then_test(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"第{i}行\n" for i in range(100)), encoding="utf-8")
    data = load_corpus(path, heldout_fraction=0.2)
    # 20 held-out lines: dev is the first 10, test the last 10, both contiguous, nothing lost or shared.
    assert data.dev + data.test == data.heldout
    assert data.dev.splitlines() == [f"第{i}行" for i in range(80, 90)]
    assert data.test.splitlines() == [f"第{i}行" for i in range(90, 100)]
