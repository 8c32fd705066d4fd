"""The writing network (model.stepper) computes what LyricsNet computes: exactly in float32, closely in bfloat16."""

from __future__ import annotations

import pytest
import torch

from model import stepper as stepper_module
from model.bpc import bits_per_char, dev_and_test, token_log2probs
from model.checkpoint import load_bundle
from model.corpus import load_corpus
from model.network import LyricsNet, NetConfig, spell
from model.sample import Sampler, SampleRequest
from model.stepper import PrecisionError, Stepper, cpu_has_native_bf16, resolve_precision
from model.vocab import Vocab, segment
from tests.helpers import SAMPLE_CORPUS

SHAPES = [(cell, layers, tied) for cell in ("lstm", "gru", "rnn") for layers in (1, 2) for tied in (True, False)]
# Character-aware words (compose, own embedding too, tied composed outputs): the stepper composes once, on load.
COMPOSED = [
    ("mean", True, False),
    ("mean", True, True),
    ("mean", False, True),
    ("sum", True, True),
    ("cnn", True, False),
    ("cnn", True, True),
]
# (compose, own embedding too, composed outputs) for untied weights: the output vectors get a composer of their own.
UNTIED = [("mean", True, True), ("cnn", False, True), ("mean", False, False)]
WORDS = [
    "<unk>",
    "\n",
    *"窗外的麻雀在电线杆上多嘴你说这一句很有夏天的感觉",
    "窗外",
    "麻雀",
    "电线杆",
    "夏天",
    "感觉",
    "这一句",
]


def random_net(
    cell: str, layers: int, tied: bool, compose: str = "none", own: bool = True, output: bool = False
) -> LyricsNet:
    torch.manual_seed(0)
    spelling, chars = spell(WORDS, symbols=("<unk>",))
    composing = compose != "none"
    config = NetConfig(
        vocab_size=len(WORDS),
        cell=cell,
        layers=layers,
        hidden=24,
        embed=12,
        tie_weights=tied,
        compose=compose,
        chars=chars if composing else 0,
        spelling_len=spelling.size(1) if composing else 0,
        compose_own=own,
        compose_output=output,
        word_dropout=0.3 if composing else 0.0,  # training only: the stepper must not apply it
        char_dropout=0.3 if composing else 0.0,
    )
    return LyricsNet(config, spelling if composing else None).eval()


def flat(state) -> torch.Tensor:
    return torch.cat([s.flatten() for s in state]) if isinstance(state, tuple) else state.flatten()


@pytest.mark.parametrize("table", [True, False], ids=["input-table", "no-table"])
@pytest.mark.parametrize(("cell", "layers", "tied"), SHAPES)
def test_float32_steps_equal_the_network(cell: str, layers: int, tied: bool, table: bool, monkeypatch) -> None:
    if not table:  # a vocabulary too large for the table of input gates
        monkeypatch.setattr(stepper_module, "MAX_TABLE_ENTRIES", 0)
    assert_steps_equal_the_network(random_net(cell, layers, tied), table)


@pytest.mark.parametrize("table", [True, False], ids=["input-table", "no-table"])
@pytest.mark.parametrize(("compose", "own", "output"), COMPOSED)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_steps_equal_a_character_aware_network(
    cell: str, compose: str, own: bool, output: bool, table: bool, monkeypatch
) -> None:
    if not table:
        monkeypatch.setattr(stepper_module, "MAX_TABLE_ENTRIES", 0)
    net = random_net(cell, 2, True, compose, own, output)
    net.train()  # the stepper composes as the network serves, without dropout, whatever mode it was handed in
    assert_steps_equal_the_network(net, table)
    assert net.training  # and hands the network back as it found it


@pytest.mark.parametrize(("compose", "own", "output"), UNTIED)
def test_float32_steps_equal_an_untied_character_aware_network(compose: str, own: bool, output: bool) -> None:
    assert_steps_equal_the_network(random_net("lstm", 1, False, compose, own, output), True)


def assert_steps_equal_the_network(net: LyricsNet, table: bool) -> None:
    ids = torch.randint(0, len(WORDS), (3, 9), generator=torch.Generator().manual_seed(1))
    stepper = Stepper(net, "float32")
    was_training = net.training
    with torch.no_grad():
        want, want_state = net.eval()(ids)
    net.train(was_training)
    assert (stepper.input_gates is not None) == table
    first, state = stepper(ids[:, :5])  # the state is carried between calls, as the sampler carries it
    rest, state = stepper(ids[:, 5:], state)
    assert stepper.dtype == torch.float32
    torch.testing.assert_close(torch.cat([first, rest], dim=1), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flat(state), flat(want_state), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("cell", "compose"), [("lstm", "none"), ("gru", "none"), ("rnn", "none"), ("lstm", "mean")])
def test_bfloat16_steps_stay_close_and_return_float32(cell: str, compose: str) -> None:
    net = random_net(cell, 2, True, compose, output=compose != "none")
    ids = torch.randint(0, len(WORDS), (4, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = torch.log_softmax(net(ids)[0], -1)
    logits, state = Stepper(net, "bfloat16")(ids)
    assert logits.dtype == torch.float32 and flat(state).dtype == torch.float32
    assert (torch.log_softmax(logits, -1) - want).abs().max() < 0.05


def test_bfloat16_costs_next_to_nothing_in_held_out_bits(tiny_bundle) -> None:
    bundle = load_bundle(tiny_bundle, torch.device("cpu"))
    vocab = Vocab(bundle.vocab)
    corpus = load_corpus(SAMPLE_CORPUS)
    train_ids = vocab.words_to_ids(segment(corpus.train)).ids
    _, test = dev_and_test(vocab, train_ids, corpus.dev, corpus.test)
    device = torch.device("cpu")

    class Scored(torch.nn.Module):  # token_log2probs wants a module; this one runs the stepper
        def __init__(self, precision: str):
            super().__init__()
            self.stepper = Stepper(bundle.net.eval(), precision)

        def forward(self, ids, state=None):
            return self.stepper(ids, state)

    full = bits_per_char(token_log2probs(Scored("float32"), test, device), test)
    half = bits_per_char(token_log2probs(Scored("bfloat16"), test, device), test)
    assert full == pytest.approx(bits_per_char(token_log2probs(bundle.net, test, device), test), abs=1e-4)
    assert abs(half - full) < 0.01


def test_precision_is_fixed_per_machine_and_checked() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert resolve_precision("auto", torch.device("cuda")) == torch.float32
    assert resolve_precision("float32", cpu) == torch.float32 and resolve_precision("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(PrecisionError, match="unknown precision 'half'"):
        resolve_precision("half", cpu)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_sampler_writes_reproducibly_in_either_precision(tiny_bundle, precision: str) -> None:
    sampler = Sampler.load(tiny_bundle, device="cpu", precision=precision)
    assert sampler.step.dtype == resolve_precision(precision, torch.device("cpu"))
    assert sampler.precision == str(sampler.step.dtype).removeprefix("torch.")
    request = SampleRequest(seed="窗外", length=40, random_seed=5)
    song = sampler.generate(request)
    assert song.text.startswith("窗外") and len(song.text) > 10
    assert sampler.generate_many([SampleRequest(seed="雨", length=40, random_seed=1), request])[1].text == song.text
