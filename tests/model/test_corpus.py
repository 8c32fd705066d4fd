import zipfile

import pytest

from model.corpus import CorpusError, load_corpus, normalise, read_texts, split_lines


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


def test_the_held_out_tail_splits_into_dev_then_test(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"第{i}行\n" for i in range(100)), encoding="utf-8")
    data = load_corpus(path, heldout_fraction=0.2)
    # 20 held-out lines: dev is the first 10, test the last 10, both contiguous, nothing lost or shared.
    assert data.dev + data.test == data.heldout
    assert data.dev.splitlines() == [f"第{i}行" for i in range(80, 90)]
    assert data.test.splitlines() == [f"第{i}行" for i in range(90, 100)]
