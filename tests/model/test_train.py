import math

import pytest
import torch

from model.__main__ import train_and_judge
from model.checkpoint import load_bundle, safe_load
from model.config import TrainConfig, TrainingError
from model.events import CheckpointEvent, DoneEvent, EarlyStopEvent, EpochEvent, JudgingEvent, ResumeEvent, StartEvent
from model.train import TrainingCancelled, train
from tests.helpers import tiny_config, write_corpus


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.txt")


def run(config, **kwargs):
    events = []
    train(config, on_event=events.append, **kwargs)
    return events


def epochs(events):
    return [e for e in events if isinstance(e, EpochEvent)]


def test_heldout_loss_falls_and_beats_uniform(corpus, tmp_path):
    # Spelling half the words of this 1,900-token corpus would hide the word pattern this test looks for.
    events = run(tiny_config(corpus, tmp_path / "m.pt", epochs=4, patience=4, spell_dropout=0.0))
    history = epochs(events)
    assert history[-1].heldout_loss < history[0].heldout_loss
    start = next(e for e in events if isinstance(e, StartEvent))
    assert history[-1].heldout_loss < math.log(start.vocab) - 0.5  # well below a uniform guess
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.bpc <= done.net_bpc + 1e-9


def test_bundle_is_self_describing(corpus, tmp_path):
    run(tiny_config(corpus, tmp_path / "m.pt", epochs=1))
    bundle = load_bundle(tmp_path / "m.pt")
    assert bundle.vocab[0] == "<unk>" and "\n" in bundle.vocab
    assert bundle.metrics["bpc"] > 0 and bundle.metrics["trigram_bpc"] > 0
    assert len(bundle.corpus_sha256) == 64 and len(bundle.sha256) == 64
    assert bundle.history[0]["epoch"] == 1
    assert math.isclose(sum(bundle.mixture.weights.values()), 1.0, abs_tol=1e-6)


def test_early_stopping_triggers(corpus, tmp_path):
    # A huge model with no regularisation on a tiny corpus overfits within a few epochs.
    config = tiny_config(
        corpus,
        tmp_path / "m.pt",
        epochs=40,
        patience=1,
        hidden=256,
        embed=128,
        dropout=0.0,
        embed_dropout=0.0,
        weight_decay=0.0,
        lr=0.01,
        lr_patience=10,
        min_count=1,
    )
    events = run(config)
    stops = [e for e in events if isinstance(e, EarlyStopEvent)]
    assert stops, "training never stopped early"
    history = epochs(events)
    assert len(history) < 40
    best = min(e.bpc for e in history)
    assert history[-1].bpc > best
    assert load_bundle(tmp_path / "m.pt").metrics["dev_net_bpc"] == pytest.approx(best)  # early stopping watches dev


# Resume must continue exactly with every kind of input: a table of words, and words composed from their
# characters with all their training-only randomness (word, character and spelling dropout).
INPUTS = {
    "words": dict(compose="none", compose_output=False, word_dropout=0.0, char_dropout=0.0, spell_dropout=0.0),
    "characters": dict(compose="mean", compose_output=True, word_dropout=0.2, char_dropout=0.1, spell_dropout=0.2),
    "spelled-whole": dict(compose="mean", compose_output=True, spell_dropout=0.4, spell_whole=True),
    "char-cnn": dict(compose="cnn", compose_output=True, word_dropout=0.2, char_dropout=0.1, spell_dropout=0.0),
}


@pytest.mark.parametrize("inputs", INPUTS)
def test_resume_gives_the_same_next_loss(corpus, tmp_path, inputs):
    options = INPUTS[inputs]
    straight = epochs(run(tiny_config(corpus, tmp_path / "a.pt", epochs=3, patience=5, **options)))
    run(tiny_config(corpus, tmp_path / "b.pt", epochs=2, patience=5, **options))
    resumed = run(tiny_config(corpus, tmp_path / "b.pt", epochs=3, patience=5, resume=True, **options))
    assert isinstance(resumed[0], ResumeEvent) and resumed[0].epoch == 2
    third = epochs(resumed)
    assert [e.epoch for e in third] == [3]
    assert third[0].train_loss == pytest.approx(straight[2].train_loss, rel=1e-6)
    assert third[0].heldout_loss == pytest.approx(straight[2].heldout_loss, rel=1e-6)


def test_resume_refuses_another_network_shape(corpus, tmp_path):
    run(tiny_config(corpus, tmp_path / "m.pt", epochs=1, compose="none"))
    with pytest.raises(Exception, match="another network shape"):
        run(tiny_config(corpus, tmp_path / "m.pt", epochs=2, hidden=64, compose="none", resume=True))
    with pytest.raises(Exception, match="another network shape"):  # words composed from characters: another shape
        run(tiny_config(corpus, tmp_path / "m.pt", epochs=2, compose="mean", resume=True))


def test_respelling_spells_some_words_with_their_characters_the_same_way_for_a_seed():
    from model.train import respell

    ids = [5, 1, 5, 2, 5, 6] * 200  # 5 is a two-character word spelled 3 4
    inputs, targets = respell(ids, {5: [3, 4]}, 0.25, seed=1, whole_targets=False)
    assert respell(ids, {5: [3, 4]}, 0.25, seed=1, whole_targets=False) == (inputs, targets)
    assert respell(ids, {5: [3, 4]}, 0.25, seed=2, whole_targets=False) != (inputs, targets)
    stream = [*inputs, targets[-1]]
    assert targets == stream[1:]  # each token predicts the one after it
    kept = stream.count(5)
    assert 0.65 * 600 < kept < 0.85 * 600  # about a quarter of the 600 words spelled
    assert len(stream) == len(ids) + (600 - kept)  # each spelled word is one token longer, nothing else changes
    assert [t for t in stream if t not in (3, 4, 5)] == [t for t in ids if t != 5]
    assert respell(ids, {5: [3, 4]}, 0.0, seed=1) == (ids[:-1], ids[1:])


def test_a_spelled_word_is_still_predicted_whole():
    from model.train import respell

    inputs, targets = respell([1, 5, 2, 5, 6], {5: [3, 4]}, 0.999, seed=0, whole_targets=True)
    assert inputs == [1, 3, 4, 2, 3, 4]  # the network reads the words spelled ...
    assert targets == [5, 4, 2, 5, 4, 6]  # ... but is asked for them whole, then for their next character


def test_cancel_keeps_a_usable_checkpoint(corpus, tmp_path):
    config = tiny_config(corpus, tmp_path / "m.pt", epochs=5, patience=5)
    seen = []

    def on_event(event):
        seen.append(event)

    def should_stop():
        return any(isinstance(e, CheckpointEvent) for e in seen)

    with pytest.raises(TrainingCancelled, match="resume"):
        train(config, on_event=on_event, should_stop=should_stop)
    ckpt = safe_load(config.checkpoint_path, "lyrics-checkpoint")
    assert ckpt["epoch"] == 1
    assert not (tmp_path / "m.pt").exists()
    events = run(tiny_config(corpus, tmp_path / "m.pt", epochs=2, patience=5, resume=True))
    assert [e.epoch for e in epochs(events)] == [2]
    assert (tmp_path / "m.pt").exists()


def test_exploding_loss_stops_with_a_clear_error(corpus, tmp_path):
    config = tiny_config(corpus, tmp_path / "m.pt", lr=1e12, clip=1e12)
    with pytest.raises(TrainingError, match="lower --lr"):
        train(config)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(TrainingError, match="--dropout"):
        TrainConfig(corpus="x", dropout=1.5)
    with pytest.raises(TrainingError, match="--lr"):
        TrainConfig(corpus="x", lr=float("nan"))


def test_state_is_carried_between_batches(corpus, tmp_path):
    # Truncated BPTT: a run with carried state differs from one resetting it, so check the streams are contiguous.
    from model.train import batchify

    streams = batchify(list(range(103)), 4)
    assert streams.shape == (4, 25)
    assert torch.equal(streams[1], torch.arange(25, 50))


def test_added_texts_are_trained_on_and_recorded_while_the_heldout_text_stays(corpus, tmp_path):
    folder = tmp_path / "corpora"
    folder.mkdir()
    (folder / "added.txt").write_text("麒麟飞过琥珀色的海\n" * 3 + "琥珀色的海上有麒麟\n", encoding="utf-8")
    run(tiny_config(corpus, tmp_path / "base.pt", epochs=1))
    run(tiny_config(corpus, tmp_path / "more.pt", epochs=1, added_corpora=str(folder)))
    base, more = load_bundle(tmp_path / "base.pt"), load_bundle(tmp_path / "more.pt")
    assert "麒" not in base.vocab and {"麒", "琥", "珀"} <= set(more.vocab)  # the added text was trained on
    assert more.corpus_sha256 == base.corpus_sha256  # ...and both were scored on the same held-out text
    assert more.metrics["heldout_chars"] == base.metrics["heldout_chars"]
    [record] = more.added_corpora
    assert (record["name"], record["lines"]) == ("added.txt", 2)  # its repeated line counted once
    assert len(record["sha256"]) == 64 and base.added_corpora == []
    assert more.train_config["added_corpora"] == str(folder)


def test_the_train_command_keeps_the_song_quality_report_in_the_bundle(corpus, tmp_path):
    events = []
    train_and_judge(tiny_config(corpus, tmp_path / "m.pt", epochs=1, judge_songs=10), on_event=events.append)
    assert any(isinstance(e, JudgingEvent) and e.songs == 10 for e in events)
    assert isinstance(events[-1], DoneEvent)  # the bundle "done" names already carries the report
    report = load_bundle(tmp_path / "m.pt").metrics["judge"]
    assert report["songs"] == 10
    line_level = ("rhyme", "line_mean", "char_auc", "syntax_auc", "wordlike", "verbatim", "novel_ngrams", "loops")
    song_level = ("seed_returns", "coherence", "window_auc", "chorus", "patchwork")
    for key in line_level + song_level:
        assert isinstance(report[key], float), key
        assert isinstance(report[f"corpus_{key}"], float), key
    assert 0 <= report["targets_met"] <= report["targets"] == 13


def test_train_itself_writes_no_song_quality_report(corpus, tmp_path):
    # The report is a step of the train command, after train(): a caller of train() gets the bundle alone.
    events = run(tiny_config(corpus, tmp_path / "m.pt", epochs=1, judge_songs=10))
    assert not any(isinstance(e, JudgingEvent) for e in events) and isinstance(events[-1], DoneEvent)
    assert "judge" not in load_bundle(tmp_path / "m.pt").metrics


def test_static_bpc_and_the_dev_test_split_are_reported(corpus, tmp_path):
    events = run(tiny_config(corpus, tmp_path / "m.pt", epochs=2))
    done = events[-1]
    metrics = load_bundle(tmp_path / "m.pt").metrics
    assert metrics["static_bpc"] == pytest.approx(done.static_bpc)
    # The static mixture (no song cache) can only be as good as what the cache adds on top of it allows.
    assert metrics["bpc"] <= metrics["static_bpc"] + 0.5
    assert metrics["dev_net_bpc"] == pytest.approx(min(e.bpc for e in epochs(events)))


def test_counting_the_dev_text_changes_only_what_is_counted_after_the_weights_are_fit(corpus, tmp_path):
    run(tiny_config(corpus, tmp_path / "a.pt", epochs=1, count_dev=False))
    run(tiny_config(corpus, tmp_path / "b.pt", epochs=1, count_dev=True))
    train_only, with_dev = load_bundle(tmp_path / "a.pt"), load_bundle(tmp_path / "b.pt")
    assert with_dev.mixture.weights == train_only.mixture.weights  # fit on dev with the training text's counts
    assert with_dev.metrics["net_bpc"] == train_only.metrics["net_bpc"]  # the network never sees dev
    assert with_dev.train_ids[: len(train_only.train_ids)] == train_only.train_ids
    dev_tokens = len(with_dev.train_ids) - len(train_only.train_ids)
    assert dev_tokens > 0 and with_dev.metrics["static_bpc"] != train_only.metrics["static_bpc"]
