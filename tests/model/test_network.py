"""The network itself: character-aware word vectors, and bundles written before them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from model.checkpoint import load_bundle, save_bundle
from model.mixture import Mixture
from model.network import LyricsNet, NetConfig, spell
from model.sample import Sampler, SampleRequest
from model.stepper import Stepper

TOKENS = ["<unk>", "\n", "的", "我", "雨", "天", "晴", "下雨", "晴天", "雨天", "天晴", "我的", "麻", "雀", "麻雀"]


def composed_net(compose: str = "mean", **overrides) -> LyricsNet:
    torch.manual_seed(0)
    spelling, chars = spell(TOKENS, symbols=("<unk>",))
    values = dict(
        vocab_size=len(TOKENS), hidden=16, embed=8, compose=compose, chars=chars, spelling_len=spelling.size(1)
    )
    config = NetConfig(**{**values, **overrides})
    return LyricsNet(config, spelling).eval()


def test_spelling_numbers_characters_and_keeps_symbols_whole() -> None:
    spelling, chars = spell(["<unk>", "下雨", "雨", "下"], symbols=("<unk>",))
    assert spelling.tolist() == [[1, 0], [2, 3], [3, 0], [2, 0]]  # 下雨 is spelled with the ids of 下 and 雨
    assert chars == 4  # <unk>, 下, 雨 and the padding 0


@pytest.mark.parametrize("compose", ["sum", "mean", "cnn"])
def test_a_word_never_trained_gets_a_vector_from_its_characters(compose: str) -> None:
    net = composed_net(compose)
    with torch.no_grad():
        net.embedding.weight.zero_()  # as if no word had been seen: what is left comes from the characters
        vectors = net.word_vectors()
        index = {t: i for i, t in enumerate(TOKENS)}
        # Words made of the same characters in the same order get the same vector; other characters, another.
        torch.testing.assert_close(vectors[index["下雨"]], net.compose(net.spelling[[index["下雨"]]])[0])
        assert not torch.allclose(vectors[index["下雨"]], vectors[index["晴天"]])
        assert vectors[index["麻雀"]].abs().sum() > 0
        # A word the vocabulary lacks (天雀) is composed from the characters it shares with words it has.
        unseen = torch.tensor([[net.spelling[index["天"], 0], net.spelling[index["雀"], 0]]])
        before = net.compose(unseen)
        net.chars.embedding.weight[net.spelling[index["雀"], 0]] += 1.0  # learn something about 雀 ...
        after = net.compose(unseen)
        assert not torch.allclose(before, after)  # ... and every word with 雀 in it moves
        assert torch.allclose(net.word_vectors()[index["下雨"]], vectors[index["下雨"]])  # words without it stay


def test_mean_composition_is_the_mean_of_the_characters() -> None:
    net = composed_net("mean", compose_own=False, compose_output=True)
    table = net.chars.embedding.weight
    row = TOKENS.index("麻雀")
    with torch.no_grad():
        want = (table[net.spelling[row, 0]] + table[net.spelling[row, 1]]) / 2
        torch.testing.assert_close(net.word_vectors()[row], want)


def test_tied_composed_outputs_score_with_the_composed_vectors() -> None:
    net = composed_net("mean", compose_output=True)
    ids = torch.tensor([[2, 3, 7]])
    with torch.no_grad():
        features, _ = net.features(ids)
        logits, _ = net(ids)
        torch.testing.assert_close(logits, features @ net.word_vectors().T + net.output_bias)
    assert net.decoder is None and "decoder.weight" not in net.state_dict()


@pytest.mark.parametrize("compose", ["mean", "cnn"])
def test_untied_composed_outputs_add_a_composition_of_their_own(compose: str) -> None:
    net = composed_net(compose, compose_output=True, tie_weights=False)
    ids = torch.tensor([[2, 3, 7]])
    with torch.no_grad():
        features, _ = net.features(ids)
        composed = net.output_chars(net.spelling)
        assert composed.shape == (len(TOKENS), net.config.hidden)
        torch.testing.assert_close(net(ids)[0], features @ (net.decoder.weight + composed).T + net.decoder.bias)


def test_word_and_character_dropout_act_in_training_only() -> None:
    net = composed_net("mean", compose_output=True, word_dropout=0.5, char_dropout=0.5)
    with torch.no_grad():
        fixed = net.word_vectors()
        assert torch.equal(fixed, net.word_vectors())  # eval: deterministic
        net.train()
        torch.manual_seed(1)
        dropped = net.word_vectors()
        assert not torch.allclose(dropped, fixed)


def test_bad_compositions_are_refused() -> None:
    with pytest.raises(ValueError, match="compose must be one of"):
        NetConfig(vocab_size=10, compose="lstm", chars=5, spelling_len=2)
    with pytest.raises(ValueError, match="character table"):
        NetConfig(vocab_size=10, compose="mean")
    with pytest.raises(ValueError, match="without own embeddings"):
        NetConfig(vocab_size=10, compose="mean", chars=5, spelling_len=2, compose_own=False)
    with pytest.raises(ValueError, match="spelling"):
        LyricsNet(NetConfig(vocab_size=len(TOKENS)), spell(TOKENS)[0])
    net = composed_net()
    with pytest.raises(ValueError, match="character ids"):
        net.set_spelling(net.spelling + 100)


# ---------------------------------------------------------------- bundles written before character-aware words

OLD_NET_CONFIG_KEYS = (
    "vocab_size",
    "cell",
    "layers",
    "hidden",
    "embed",
    "dropout",
    "embed_dropout",
    "tie_weights",
    "locked_dropout",
)


def old_forward(state: dict[str, torch.Tensor], config: NetConfig, ids: torch.Tensor) -> torch.Tensor:
    """What the network computed before character-aware words, written with torch's modules from the weights."""
    rnn = nn.LSTM(config.embed, config.hidden, num_layers=config.layers, batch_first=True)
    rnn.load_state_dict({k.removeprefix("rnn."): v for k, v in state.items() if k.startswith("rnn.")})
    out, _ = rnn(nn.functional.embedding(ids, state["embedding.weight"]))
    out = nn.functional.linear(out, state["project.weight"], state["project.bias"])
    return nn.functional.linear(out, state["decoder.weight"], state["decoder.bias"])


def test_an_old_bundle_loads_and_writes_as_before(tmp_path) -> None:
    torch.manual_seed(3)
    vocab = [*TOKENS, "窗外", "窗", "外"]
    config = NetConfig(vocab_size=len(vocab), hidden=16, embed=8)
    net = LyricsNet(config).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert set(state) == {
        "embedding.weight",
        *(f"rnn.{name}_l0" for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        "project.weight",
        "project.bias",
        "decoder.weight",
        "decoder.bias",
    }  # the same weights as before, under the same names: nothing new to load
    ids = torch.tensor([len(vocab) - 3, 3, 2, 5, 1, 4])
    mixture = Mixture(weights={"net": 1.0})
    save_bundle(tmp_path / "new.pt", net, vocab, ids.tolist(), mixture, {}, [], {}, "0" * 64)
    old = torch.load(tmp_path / "new.pt", weights_only=True)
    old["net_config"] = {k: old["net_config"][k] for k in OLD_NET_CONFIG_KEYS}  # as bundles were written
    torch.save(old, tmp_path / "old.pt")

    bundle = load_bundle(tmp_path / "old.pt")
    assert bundle.net.config == config and not bundle.net.config.composed
    batch = torch.randint(0, len(vocab), (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(bundle.net(batch)[0], old_forward(state, config, batch))
    stepper = Stepper(bundle.net, "float32")
    assert torch.equal(stepper.embedding, state["embedding.weight"])  # the stepper's tables are the old weights
    assert torch.equal(stepper.decoder[0], state["decoder.weight"])
    torch.testing.assert_close(stepper(batch)[0], old_forward(state, config, batch), rtol=1e-5, atol=1e-5)
    for precision in ("float32", "bfloat16"):
        request = SampleRequest(seed="窗外", length=30, random_seed=2, rhyme="off")
        songs = [Sampler.load(tmp_path / name, device="cpu", precision=precision).generate(request).text for name in
                 ("old.pt", "new.pt")]  # fmt: skip
        assert songs[0] == songs[1]


def test_a_composed_network_round_trips_through_a_bundle(tmp_path) -> None:
    net = composed_net("cnn", compose_output=True)
    ids = list(range(len(TOKENS)))
    save_bundle(tmp_path / "m.pt", net, TOKENS, ids, Mixture(weights={"net": 1.0}), {}, [], {}, "0" * 64)
    bundle = load_bundle(tmp_path / "m.pt")
    assert bundle.net.config == dataclasses.replace(net.config)
    assert torch.equal(bundle.net.spelling, net.spelling)  # rebuilt from the bundle alone
    batch = torch.tensor([[2, 7, 14, 1]])
    with torch.no_grad():
        assert torch.equal(bundle.net(batch)[0], net(batch)[0])
