from model.vocab import NEWLINE, UNK, Vocab, segment


def test_line_breaks_are_tokens():
    words = segment("窗外的雨\n下个不停\n")
    assert words.count(NEWLINE) == 2
    assert "".join(words) == "窗外的雨\n下个不停\n"


def test_rare_words_fall_back_to_characters_and_every_seen_character_stays():
    words = segment("窗外的雨\n" * 3 + "麻雀飞过\n")
    vocab = Vocab.build(words, min_count=2)
    assert "麻雀" not in vocab  # seen once: spelled with its characters
    for ch in "窗外的雨麻雀飞过":
        assert ch in vocab
    encoded = vocab.encode("窗外的麻雀")
    assert encoded.unknown == []
    assert vocab.decode(encoded.ids) == "窗外的麻雀"
    assert vocab.unk_id not in encoded.ids


def test_unseen_characters_are_reported_not_replaced():
    vocab = Vocab.build(segment("窗外的雨\n" * 3), min_count=1)
    encoded = vocab.encode("窗外的龙卷风")
    assert encoded.unknown == ["龙", "卷", "风"]
    assert encoded.ids.count(vocab.unk_id) == 3
    assert vocab.decode(encoded.ids).startswith("窗外的")


def test_round_trip_through_a_plain_list():
    vocab = Vocab.build(segment("天空很蓝\n你的微笑\n" * 2), min_count=2)
    again = Vocab(list(vocab.itos))
    text = "你的天空很蓝\n"
    assert again.decode(again.encode(text).ids) == text
    assert vocab.itos[0] == UNK
