"""Integration checks on the reference corpus (../shared/data/jaychou_lyrics.txt.zip, never copied here)."""

from collections import Counter

import pytest

from model.corpus import load_corpus
from model.ngram import char_ngram_bpc
from model.vocab import Vocab, segment
from tests.helpers import REFERENCE_CORPUS

pytestmark = pytest.mark.skipif(not REFERENCE_CORPUS.exists(), reason="the reference corpus is not beside the repo")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(REFERENCE_CORPUS)


def test_heldout_is_the_last_582_lines(corpus):
    assert corpus.train.count("\n") == 5237
    assert corpus.heldout.count("\n") == 582
    assert corpus.heldout.endswith("因為超人不能流眼泪\n")


def test_the_flagship_seed_stays_expressible(corpus):
    words = segment(corpus.train)
    vocab = Vocab.build(words, min_count=3)
    assert Counter(corpus.train)["雀"] == 1  # seen exactly once in the training part
    encoded = vocab.encode("窗外的麻雀")
    assert encoded.unknown == [] and vocab.unk_id not in encoded.ids
    assert vocab.decode(encoded.ids) == "窗外的麻雀"


def test_character_bars_on_the_reference_split(corpus):
    # The reference corpus' known figures, counted on the raw text: unigram 9.20, bigram 8.10, trigram about 8.06.
    # Our normalisation folds runs of spaces, so there are ~1.5% fewer held-out characters.
    assert char_ngram_bpc(corpus.train, corpus.heldout, 1) == pytest.approx(9.26, abs=0.05)
    assert char_ngram_bpc(corpus.train, corpus.heldout, 3) == pytest.approx(8.08, abs=0.05)
