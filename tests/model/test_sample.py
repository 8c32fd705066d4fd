import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from model.checkpoint import save_bundle
from model.mixture import Mixture
from model.network import LyricsNet, NetConfig
from model.novelty import SPAN_CHARS
from model.rhyme import line_rhyme
from model.sample import (
    LINE_SLACK,
    MAX_LINE_TOKENS,
    SHORT_SLACK,
    Sampler,
    SampleRequest,
    SamplingError,
    line_endings,
)
from model.train import train
from tests.conftest import tiny_config

CRAFTED_VOCAB = ["<unk>", "\n", "甲", "乙", "丙", "丁", "戊", "己"]


def crafted_sampler(tmp_path, probs, train_text="甲乙\n", precision="float32"):
    """A bundle whose network ignores its input and always predicts ``probs`` over CRAFTED_VOCAB."""
    net = LyricsNet(
        NetConfig(
            vocab_size=len(CRAFTED_VOCAB),
            cell="rnn",
            hidden=4,
            embed=4,
            dropout=0.0,
            embed_dropout=0.0,
            tie_weights=False,
        )
    )
    with torch.no_grad():
        net.decoder.weight.zero_()
        net.decoder.bias.copy_(torch.tensor(probs, dtype=torch.float).clamp_min(1e-12).log())
    stoi = {t: i for i, t in enumerate(CRAFTED_VOCAB)}
    train_ids = [stoi[ch] for ch in train_text]
    path = tmp_path / "crafted.pt"
    save_bundle(path, net, CRAFTED_VOCAB, train_ids, Mixture(weights={"net": 1.0}), {}, [], {}, "0" * 64)
    return Sampler.load(path, device="cpu", precision=precision)


def plain(**fields) -> SampleRequest:
    """A request with the song-level controls off (no rhyme, one candidate per line, no penalty), for tests of
    the token-level ones on crafted models."""
    return SampleRequest(**{"rhyme": "off", "candidates": 1, "repetition_penalty": 1.0, **fields})


@pytest.fixture(scope="module")
def sampler(tiny_bundle, precision):
    """The tiny bundle in each precision (tests/model/conftest.py): for tests whose songs depend on rounding."""
    return Sampler.load(tiny_bundle, device="cpu", precision=precision)


@pytest.fixture(scope="module")
def float32_sampler(tiny_bundle):
    """The tiny bundle in float32 only: for tests of what does not depend on the network's rounding (checks,
    the song's shape), which would only double their time in a second precision."""
    return Sampler.load(tiny_bundle, device="cpu", precision="float32")


def test_greedy_is_deterministic(sampler):
    request = SampleRequest(seed="窗外", temperature=0, length=60, random_seed=1)
    other = SampleRequest(seed="窗外", temperature=0, length=60, random_seed=2)
    assert sampler.generate(request).text == sampler.generate(other).text


def test_same_random_seed_reproduces_the_song(sampler):
    first = sampler.generate(SampleRequest(seed="窗外的麻雀", temperature=1.0, length=80, random_seed=7))
    again = sampler.generate(SampleRequest(seed="窗外的麻雀", temperature=1.0, length=80, random_seed=7))
    other = sampler.generate(SampleRequest(seed="窗外的麻雀", temperature=1.0, length=80, random_seed=8))
    assert first.text == again.text
    assert first.text != other.text
    assert first.text.startswith("窗外的麻雀")


def test_songs_in_mixed_batches_match_batch_one(sampler):
    requests = [
        SampleRequest(
            seed=["窗外", "雨", "", "回忆里的你"][i % 4],
            temperature=[0.5, 0.8, 1.2, 0][i % 4],
            length=20 + (i * 7) % 40,
            random_seed=i,
            top_k=[0, 5][i % 2],
            top_p=[1.0, 0.9, 1.0][i % 3],
            repetition_penalty=[1.0, 1.3][i % 2],
            rhyme=["auto", "off", "雨", "auto", "花"][i % 5],
            candidates=[4, 1, 8][i % 3],
        )
        for i in range(100)
    ]
    alone = [sampler.generate(r).text for r in requests]
    batched = []
    for start in range(0, 100, 25):
        batched += [s.text for s in sampler.generate_many(requests[start : start + 25])]
    same = sum(a == b for a, b in zip(alone, batched, strict=False))
    assert same >= 99, f"only {same} of 100 songs reproduced inside a batch"


def test_results_come_back_in_order_and_short_songs_leave_early(float32_sampler):
    requests = [SampleRequest(seed="雨", length=n, random_seed=n) for n in (50, 1, 20)]
    samples = float32_sampler.generate_many(requests)
    assert [s.request.length for s in samples] == [50, 1, 20]
    # A song ends with the line on which it reaches its length: never sooner, and never a line later.
    for sample in samples:
        assert sample.request.length <= sample.tokens < sample.request.length + MAX_LINE_TOKENS
    assert samples[1].lines == 1
    assert float32_sampler.generate_many([]) == []


def test_top_k_one_equals_greedy(sampler):
    greedy = sampler.generate(SampleRequest(seed="天空", temperature=0, length=50, random_seed=3))
    # Greedy writing follows the plan of random seed 0 (it draws nothing else); top-k 1 with that seed does too.
    top1 = sampler.generate(SampleRequest(seed="天空", temperature=1.5, top_k=1, length=50, random_seed=0))
    assert top1.text == greedy.text


def test_top_p_never_samples_outside_the_nucleus(tmp_path, precision):
    # 甲 .5, 乙 .3 make the 0.8 nucleus; the other tokens share 0.2 and must never appear.
    probs = [0.0, 0.0, 0.5, 0.3, 0.1, 0.05, 0.03, 0.02]
    sampler = crafted_sampler(tmp_path, probs, precision=precision)
    text = "".join(
        s.text
        for s in sampler.generate_many(
            [plain(temperature=1.0, top_p=0.8, length=200, random_seed=i) for i in range(10)]
        )
    )
    counts = Counter(text)
    assert set(counts) <= {"甲", "乙", "\n"}  # line breaks: the plan ends each line at its planned length
    assert counts["甲"] > counts["乙"] > 0
    wide = "".join(
        s.text
        for s in sampler.generate_many(
            [plain(temperature=1.0, top_p=1.0, length=200, random_seed=i) for i in range(10)]
        )
    )
    assert set(wide) - {"甲", "乙", "\n"}, "without top-p the tail should appear"


NUCLEUS_SCRIPT = """
import sys
from pathlib import Path
from tests.model.test_sample import crafted_sampler, plain
sampler = crafted_sampler(Path(sys.argv[1]), [0.0, 0.0, 0.5, 0.3, 0.1, 0.05, 0.03, 0.02])
songs = sampler.generate_many([plain(temperature=1.0, top_p=0.8, length=200, random_seed=i) for i in range(10)])
print("".join(sorted(set("".join(s.text for s in songs)) - {"\\n"})))  # line breaks: the plan's
"""


def test_top_p_never_samples_outside_the_nucleus_with_avx2_kernels(tmp_path):
    # torch picks its vector kernels by CPU, and a float32 softmax rounds differently with AVX2's than with
    # AVX-512's: on a CPU without AVX-512 the crafted nucleus summed a hair under 0.8 and let 丙 in. Force
    # AVX2's kernels (ATEN_CPU_CAPABILITY, read when torch loads: a fresh process) so every machine checks it.
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", NUCLEUS_SCRIPT, str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert set(run.stdout.strip()) == {"甲", "乙"}


def test_repetition_penalty_lowers_repeats_within_a_line(tmp_path):
    probs = [0.0, 0.02, 0.6, 0.1, 0.1, 0.08, 0.05, 0.05]
    sampler = crafted_sampler(tmp_path, probs, train_text="甲乙丙丁戊己甲乙\n" * 5)

    def share_of_top_token(penalty):
        songs = sampler.generate_many(
            [plain(temperature=1.0, length=100, random_seed=i, repetition_penalty=penalty) for i in range(10)]
        )
        lines = [line for s in songs for line in s.text.split("\n") if line]
        return sum(line.count("甲") for line in lines) / sum(len(line) for line in lines)

    unpenalised, penalised = share_of_top_token(1.0), share_of_top_token(3.0)
    assert unpenalised > 0.5
    assert penalised < unpenalised * 0.6


def test_unk_is_never_produced(tmp_path):
    probs = [0.9, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01]
    sampler = crafted_sampler(tmp_path, probs)
    for request in [SampleRequest(temperature=0, length=50), SampleRequest(temperature=2.0, length=300)]:
        assert "<unk>" not in sampler.generate(request).text


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("temperature", -0.1, "temperature"),
        ("temperature", float("nan"), "temperature"),
        ("temperature", float("inf"), "temperature"),
        ("temperature", 1e9, "temperature"),
        ("length", 0, "length"),
        ("length", 10**6, "length"),
        ("length", 2.5, "length"),
        ("top_k", -1, "top_k"),
        ("top_p", 0.0, "top_p"),
        ("top_p", 1.5, "top_p"),
        ("repetition_penalty", 0.5, "repetition_penalty"),
        ("random_seed", -1, "random_seed"),
        ("max_lines", -2, "max_lines"),
        ("seed", "雨" * 3000, "seed"),
        ("rhyme", "xyz", "rhyme"),
        ("rhyme", "", "rhyme"),
        ("rhyme", "花花", "rhyme"),
        ("candidates", 0, "candidates"),
        ("candidates", 65, "candidates"),
        ("candidates", True, "candidates"),
        ("no_copy", "yes", "no_copy"),
    ],
)
def test_invalid_parameters_raise_the_specific_error(float32_sampler, field, value, message):
    request = SampleRequest(**{field: value})
    with pytest.raises(SamplingError, match=message):
        float32_sampler.generate(request)


def test_unknown_seed_parts_are_reported_not_replaced(float32_sampler):
    sample = float32_sampler.generate(SampleRequest(seed="窗外的饕餮", length=10, random_seed=1))
    assert sample.unknown == ["饕", "餮"]
    assert sample.text.startswith("窗外的")
    assert "<unk>" not in sample.text


def test_empty_seed_starts_a_song(float32_sampler):
    sample = float32_sampler.generate(SampleRequest(seed="", length=30, random_seed=5))
    assert sample.text and not sample.text.startswith("\n")


def test_max_lines_stops_the_song(float32_sampler):
    sample = float32_sampler.generate(SampleRequest(seed="雨", length=500, max_lines=3, random_seed=2))
    assert sample.text.count("\n") <= 3
    assert sample.tokens < 500


def test_output_is_clean_text(float32_sampler):
    for sample in float32_sampler.generate_many(
        [SampleRequest(seed="回忆", length=120, random_seed=i) for i in range(5)]
    ):
        assert "  " not in sample.text
        assert all(line == line.strip() for line in sample.text.split("\n"))
        # Sections are one blank line apart, as on a lyric sheet; the song neither starts nor ends with one.
        assert "\n\n\n" not in sample.text and sample.text == sample.text.strip("\n")
        assert not any(ord(ch) < 32 and ch != "\n" for ch in sample.text)


@pytest.fixture(scope="module")
def parrot(tmp_path_factory):
    """A model trained hard on a few repeated lines: left alone it copies them."""
    folder = tmp_path_factory.mktemp("parrot")
    lines = ["窗外的雨下个不停", "我在街角等你很久", "回忆像一首老歌", "天空很蓝你的微笑很甜"]
    corpus = folder / "parrot.txt"
    corpus.write_text("\n".join(lines * 40) + "\n", encoding="utf-8")
    out = folder / "parrot.pt"
    train(tiny_config(corpus, out, epochs=6, patience=6, hidden=64, lr=0.01, dropout=0.0, embed_dropout=0.0))
    return Sampler.load(out, device="cpu"), set(lines)


def test_copied_lines_are_reported(parrot):
    sampler, lines = parrot
    samples = sampler.generate_many(
        [SampleRequest(seed="", temperature=0.5, length=60, random_seed=i, no_copy=False) for i in range(10)]
    )
    copied = [line for s in samples for line in s.copied_lines]
    assert copied and set(copied) <= lines
    assert all(0 < s.copy_rate <= 1 for s in samples if s.copied_lines)


def test_no_copy_never_emits_a_training_line(parrot):
    sampler, lines = parrot
    samples = sampler.generate_many(
        [
            SampleRequest(seed=seed, temperature=t, length=80, random_seed=i, no_copy=True)
            for i, (seed, t) in enumerate([("", 0.5), ("窗外", 0.8), ("", 0), ("我", 1.0)] * 5)
        ]
    )
    for sample in samples:
        produced = set(sample.text.split("\n"))
        assert not produced & lines, sample.text
        assert sample.copied_lines == [] or all(len(line) < 6 for line in sample.copied_lines)


def test_a_rhyme_character_sets_the_song_rhyme(float32_sampler):
    samples = float32_sampler.generate_many([SampleRequest(seed="窗外", rhyme="花", random_seed=i) for i in range(6)])
    ends = [line_rhyme(line) for s in samples for line in s.text.split("\n")]
    assert all(s.rhyme == "a" for s in samples)
    assert ends.count("a") / len(ends) >= 0.5, ends


def test_rhyme_off_writes_without_a_plan_for_rhyme(float32_sampler):
    sample = float32_sampler.generate(SampleRequest(seed="窗外", rhyme="off", random_seed=1))
    assert sample.rhyme is None


def test_lines_follow_the_planned_lengths(tmp_path):
    # Every training line has 5 characters, so every planned line does; the model breaks lines as often as real
    # lyrics do (one token in eight), not at any particular length.
    probs = [0.0, 0.12, 0.3, 0.2, 0.1, 0.1, 0.1, 0.08]
    rotations = ["甲乙丙丁戊", "乙丙丁戊甲", "丙丁戊甲乙", "丁戊甲乙丙", "戊甲乙丙丁"]  # every token ends lines alike
    sampler = crafted_sampler(tmp_path, probs, train_text="\n".join(rotations * 4) + "\n")
    songs = sampler.generate_many([SampleRequest(temperature=1.0, length=120, random_seed=i) for i in range(5)])
    lengths = [len(line) for s in songs for line in s.text.split("\n") if line]
    assert all(5 - SHORT_SLACK <= n <= 5 + LINE_SLACK for n in lengths), lengths
    assert abs(sum(lengths) / len(lengths) - 5) < 1.0


def test_no_copy_never_reproduces_an_eight_character_span(parrot):
    sampler, lines = parrot
    spans = {line[i : i + SPAN_CHARS] for line in lines for i in range(len(line) - SPAN_CHARS + 1)}
    samples = sampler.generate_many(
        [SampleRequest(seed="", temperature=t, random_seed=i) for i, t in enumerate([0.5, 0.8, 1.0] * 4)]
    )
    for sample in samples:
        for line in sample.text.split("\n"):
            assert not any(line[i : i + SPAN_CHARS] in spans for i in range(len(line) - SPAN_CHARS + 1)), line


# ---- song form and theme


def sections(text: str) -> list[list[str]]:
    """A song's sections: its lines in the blocks that blank lines separate."""
    return [block.split("\n") for block in text.split("\n\n")]


def test_default_songs_with_form_have_verses_and_their_chorus_sung_again(float32_sampler):
    samples = float32_sampler.generate_many([SampleRequest(seed="窗外", random_seed=i) for i in range(40)])
    # A song without form is cut into verses of 8 lines; one with form has a chorus of 2-4 lines second.
    with_form = [s for s in samples if len(sections(s.text)) > 2 and len(sections(s.text)[1]) <= 4]
    assert 10 <= len(with_form) <= 30  # about half the songs (plan.FORM_SHARE), as about half the corpus' do
    for sample in with_form:
        parts = sections(sample.text)
        assert len(parts) >= 4, sample.text  # verse, chorus, verse, chorus
        chorus = parts[1]
        assert 2 <= len(chorus) <= 4
        for again in parts[3::2]:
            # Sung again verbatim, or (a chorus of 3+ lines) with a new last line.
            assert again[:-1] == chorus[:-1], sample.text
            assert again[-1] == chorus[-1] or len(chorus) >= 3


def test_a_short_song_is_one_verse(float32_sampler):
    sample = float32_sampler.generate(SampleRequest(seed="窗外", length=30, random_seed=1))
    assert "\n\n" not in sample.text


def test_songs_with_form_and_theme_match_batch_one(sampler):
    requests = [
        SampleRequest(
            seed=["窗外的雨", "回忆", "", "秋天的琴声"][i % 4],
            random_seed=i,
            length=[150, 90, 200][i % 3],
            temperature=[0.8, 1.0, 0][i % 3],
        )
        for i in range(24)
    ]
    alone = [sampler.generate(r).text for r in requests]
    batched = [s.text for start in (0, 12) for s in sampler.generate_many(requests[start : start + 12])]
    same = sum(a == b for a, b in zip(alone, batched, strict=True))
    assert same >= 23, f"only {same} of 24 songs reproduced inside a batch"
    assert sum("\n\n" in text for text in alone) >= 16  # form is on


THEME_VOCAB = ["<unk>", "\n", "甲", "乙", "丙", "丁", "青花", "瓷器", "烟雨"]


def theme_sampler(tmp_path):
    """A network that gives the theme words little probability; the corpus sings 青花 beside 瓷器 and 烟雨."""
    probs = [0.0, 0.05, 0.25, 0.25, 0.2, 0.2, 0.01, 0.02, 0.02]
    net = LyricsNet(
        NetConfig(vocab_size=len(THEME_VOCAB), cell="rnn", hidden=4, embed=4, dropout=0.0, embed_dropout=0.0)
    )
    with torch.no_grad():
        net.decoder.weight.zero_()
        net.decoder.bias.copy_(torch.tensor(probs).log())
    stoi = {t: i for i, t in enumerate(THEME_VOCAB)}
    verse = ["甲乙丙", "丁甲乙", "乙丙丁", "丙丁甲"] * 2
    themed = ["青花瓷器", "烟雨甲", "瓷器乙丙", "青花丁", "烟雨乙", "甲乙丙", "丙丁甲", "乙丙丁"]
    lines = (verse + themed) * 6
    train_ids = [t for line in lines for t in ([stoi[w] for w in _split(line)] + [1])]
    path = tmp_path / "theme.pt"
    save_bundle(path, net, THEME_VOCAB, train_ids, Mixture(weights={"net": 1.0}), {}, [], {}, "0" * 64)
    return Sampler.load(path, device="cpu")


def _split(line: str) -> list[str]:
    words, i = [], 0
    while i < len(line):
        word = line[i : i + 2] if line[i : i + 2] in THEME_VOCAB else line[i]
        words.append(word)
        i += len(word)
    return words


def test_a_song_comes_back_to_its_seed_and_keeps_its_theme(tmp_path):
    sampler = theme_sampler(tmp_path)

    def later_lines_with(seed: str, words: tuple[str, ...]) -> float:
        songs = sampler.generate_many([SampleRequest(seed=seed, random_seed=i, no_copy=False) for i in range(20)])
        later = [line for s in songs for line in s.text.split("\n")[1:] if line]
        return sum(any(w in line for w in words) for line in later) / len(later)

    # 青花's theme is 瓷器 and 烟雨 (they share its windows of lines); 甲乙 has none of them.
    themed = later_lines_with("青花", ("青花", "瓷器", "烟雨"))
    plain = later_lines_with("甲乙", ("青花", "瓷器", "烟雨"))
    assert themed > 0.2 and themed > 4 * plain, (themed, plain)


def test_the_repetition_penalty_spares_the_theme_across_lines(tmp_path):
    sampler = theme_sampler(tmp_path)

    def theme_lines(penalty: float) -> float:
        requests = [
            SampleRequest(seed="青花", random_seed=i, no_copy=False, repetition_penalty=penalty) for i in range(20)
        ]
        later = [line for s in sampler.generate_many(requests) for line in s.text.split("\n")[1:] if line]
        return sum(any(w in line for w in ("青花", "瓷器", "烟雨")) for line in later) / len(later)

    # A penalty of 10 on every recent word would all but silence the theme; it stays.
    assert theme_lines(10.0) > 0.8 * theme_lines(1.0)


def test_a_theme_word_is_not_sung_twice_in_one_line(tmp_path):
    sampler = theme_sampler(tmp_path)
    songs = sampler.generate_many([SampleRequest(seed="青花", random_seed=i, no_copy=False) for i in range(20)])
    lines = [line for s in songs for line in s.text.split("\n")[1:] if line]
    assert sum(line.count("瓷器") > 1 for line in lines) <= 0.02 * len(lines)


def test_a_character_that_sits_inside_words_is_a_poor_line_ending_even_as_a_rare_token():
    # 背 is seen as a token of its own once (ending nothing), so its token rate sits near the average; but as a
    # character it mostly sits inside 背影, which never ends a line here: a line ending on it reads cut off.
    itos = ["<unk>", "\n", "背影", "离开", "背", "我"]
    newline = 1
    ids = [5, 2, 3, newline] * 10 + [4, 3, newline]
    token_only = line_endings(ids, newline, len(itos))
    with_chars = line_endings(ids, newline, len(itos), itos)
    assert token_only[4] > -1.0  # the token alone says little
    assert with_chars[4] < -1.0  # the character says it seldom ends a line
    assert with_chars[3] == token_only[3] == 0.0  # a word that ends lines is untouched
    assert with_chars[5] <= token_only[5]  # never kinder than the token's own rate


def test_line_endings_mark_the_words_that_rarely_end_a_line():
    # Token 2 ends every line it is in; 3 never does; 4 is rare (seen once, ending nothing): near the average.
    newline = 1
    ids = [2, newline, 3, 2, newline, 3, 2, newline] * 5 + [3, 4, 2, newline]
    score = line_endings(ids, newline, 5)
    assert score[2] == 0.0  # a common line ender: no reward, so lines do not end early
    assert score[3] < -1.0
    assert score[3] < score[4] < 0.0
