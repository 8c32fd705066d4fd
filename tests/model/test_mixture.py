"""The served model: the network mixed with two count models, its weights, how a bundle keeps them, and the fit."""

import math

import numpy as np
import pytest
import torch

from model.checkpoint import load_bundle
from model.mixture import CACHE_WEIGHT, SAMPLING_WEIGHTS, Mixture, component_probs, fit_mixture, static_weights
from model.network import LyricsNet, NetConfig
from model.ngram import em_weights
from model.train import prepare
from tests.helpers import SAMPLE_CORPUS, tiny_config

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare(tiny_config(SAMPLE_CORPUS, tmp_path_factory.mktemp("mixture") / "m.pt"))


def test_a_mixture_survives_the_bundle_as_plain_data():
    mixture = Mixture(weights={"net": 0.6, "ngram": 0.3, "cache": 0.1}, bpc=5.0, parts={"net": 6.0}, sampling={})
    mixture.sampling = dict(SAMPLING_WEIGHTS)
    assert Mixture.from_dict(mixture.to_dict()) == mixture


def test_weights_must_be_a_distribution_over_known_components():
    with pytest.raises(ValueError, match="sum to 1"):
        Mixture.from_dict({"weights": {"net": 0.5, "ngram": 0.3}})
    with pytest.raises(ValueError, match="non-negative"):
        Mixture.from_dict({"weights": {"net": 1.5, "ngram": -0.5}})
    # A component this program does not know is dropped, and the rest must still sum to 1.
    assert Mixture.from_dict({"weights": {"net": 0.5, "ngram": 0.5, "rnn2": 0.2}}).weights == {"net": 0.5, "ngram": 0.5}
    assert Mixture.from_dict({}).weights == {"net": 1.0}  # the network alone


def test_songs_are_written_with_the_sampling_weights_when_there_are_some():
    scoring = {"net": 0.5, "ngram": 0.4, "cache": 0.1}
    assert Mixture(weights=scoring).sampling_weights == scoring
    sampling = {"net": 0.35, "ngram": 0.65}
    assert Mixture(weights=scoring, sampling=sampling).sampling_weights == sampling


def test_the_static_mixture_drops_the_cache_and_renormalises():
    assert static_weights({"net": 0.45, "ngram": 0.45, "cache": 0.1}) == pytest.approx({"net": 0.5, "ngram": 0.5})
    assert static_weights({"cache": 1.0}) == {"net": 1.0}


def test_the_served_mixture_is_a_distribution_over_the_vocabulary(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    mixture, vocab_size = bundle.mixture, len(bundle.vocab)
    history = bundle.train_ids[:40]
    with torch.no_grad():
        logits, _ = bundle.net(torch.tensor([history]))
    parts = {
        "net": torch.softmax(logits[0, -1].double(), -1).numpy(),
        "ngram": mixture.static_model(bundle.train_ids, vocab_size).distribution(history),
        "cache": mixture.new_cache(vocab_size).distribution(history),
    }
    for weights in (mixture.weights, mixture.sampling_weights, static_weights(mixture.weights)):
        mixed = sum(w * parts[name] for name, w in weights.items())
        assert mixed.shape == (vocab_size,) and (mixed > 0).all()
        assert mixed.sum() == pytest.approx(1.0, abs=1e-6)


def test_each_component_gives_every_heldout_token_a_probability(data):
    net = LyricsNet(NetConfig(vocab_size=len(data.vocab), hidden=16, embed=8)).eval()
    probs = component_probs(Mixture(), net, len(data.vocab), data.train_ids, data.test, CPU)
    assert set(probs) == {"net", "ngram", "cache"}
    for values in probs.values():
        assert values.shape == (len(data.test.ids),) and ((values > 0) & (values <= 1)).all()


def test_em_gives_the_better_component_the_weight():
    better, worse = np.full(200, 0.5), np.full(200, 0.1)
    assert em_weights(np.stack([better, worse]))[0] > 0.99
    assert em_weights(np.stack([better, better])) == pytest.approx([0.5, 0.5])


def test_fitting_weighs_the_count_model_over_an_untrained_network_and_keeps_the_cache_fixed(data):
    torch.manual_seed(0)
    net = LyricsNet(NetConfig(vocab_size=len(data.vocab), hidden=16, embed=8)).eval()
    mixture = fit_mixture(net, len(data.vocab), data.train_ids, data.dev, data.test, CPU)
    assert math.isclose(sum(mixture.weights.values()), 1.0, abs_tol=1e-9)
    assert mixture.weights["cache"] == CACHE_WEIGHT
    assert mixture.weights["ngram"] > mixture.weights["net"]  # a random network knows nothing the counts do not
    assert mixture.sampling == SAMPLING_WEIGHTS
    labels = {"net", "ngram", "cache", "net+ngram", "net+cache (EM)", "net+ngram+cache (EM)", "served", "static"}
    assert set(mixture.parts) == labels
    assert mixture.bpc == mixture.parts["served"] and mixture.parts["ngram"] < mixture.parts["net"]
