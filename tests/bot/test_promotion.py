"""bot/promotion.py: compare a candidate with the live model, re-score on the same held-out text, move files, swap.

Stand-in samplers (tests/bot/helpers.py) through `Engine(loader=...)`, the engine's seam; the texts the
decisions become are bot/exts/training/texts.py's. The whole path through /train start is exts/test_training.py's.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from bot.engine import Engine, EngineClosedError
from bot.exts.training.texts import decision_text
from bot.promotion import (
    Promoter,
    Promotion,
    Rescorer,
    SwapDecision,
    Why,
    decide_swap,
    rescore_on,
    same_heldout,
    sibling,
)
from model.checkpoint import BundleError, load_bundle
from model.corpus import CorpusError
from model.sample import SampleRequest
from tests.bot.helpers import StandInSampler
from tests.helpers import SAMPLE_CORPUS


def make_engine(samplers: dict[str, StandInSampler], **options) -> Engine:
    return Engine(loader=lambda path, device: samplers[path.stem], torch_threads=1, **options)


def request(seed: str) -> SampleRequest:
    return SampleRequest(seed=seed, length=5)


async def promote(
    engine: Engine,
    candidate: str | os.PathLike[str],
    live: str | os.PathLike[str],
    *,
    force: bool = False,
    rescore: Rescorer | None = None,
) -> Promotion:
    return await Promoter(engine, rescore=rescore).promote(candidate, live, force=force)


# ---------------------------------------------------------------------------------------------
# promoting a candidate: compare, keep *.previous, move, swap; nothing changes when it fails


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A live bundle and a candidate beside it, each a file whose bytes say which it is."""
    live, candidate = tmp_path / "lyrics.pt", tmp_path / "lyrics.candidate.pt"
    live.write_bytes(b"old model")
    candidate.write_bytes(b"new model")
    return {"live": live, "candidate": candidate, "previous": tmp_path / "lyrics.previous.pt"}


def promoting_engine(live_bpc: float, candidate_bpc: float) -> Engine:
    samplers = {
        "lyrics": StandInSampler("old", bpc=live_bpc),
        "lyrics.candidate": StandInSampler("new", bpc=candidate_bpc),
    }
    return make_engine(samplers)


async def test_promote_a_better_model_keeps_the_old_one_as_previous(files) -> None:
    engine = promoting_engine(live_bpc=5.0, candidate_bpc=4.0)
    await engine.load(files["live"])
    promotion = await promote(engine, files["candidate"], files["live"])
    assert promotion.swapped and promotion.error is None and "4.000 < 5.000" in decision_text(promotion.decision)
    assert promotion.live.bundle_hash == "old" and promotion.candidate.sha256 == "new"
    assert engine.info.bundle_hash == "new" and engine.info.path == files["live"]  # served from the live path
    assert files["live"].read_bytes() == b"new model" and files["previous"].read_bytes() == b"old model"
    assert not files["candidate"].exists()
    assert sorted(p.name for p in files["live"].parent.iterdir()) == ["lyrics.previous.pt", "lyrics.pt"]
    assert (await engine.generate(request("y"))).sample.text == "new:y"
    await engine.close()


async def test_promote_keeps_a_better_live_model_unless_forced(files) -> None:
    engine = promoting_engine(live_bpc=4.0, candidate_bpc=5.0)
    await engine.load(files["live"])
    kept = await promote(engine, files["candidate"], files["live"])
    assert not kept.swapped and "The live model stays" in decision_text(kept.decision)
    assert engine.info.bundle_hash == "old" and files["live"].read_bytes() == b"old model"
    assert files["candidate"].read_bytes() == b"new model" and not files["previous"].exists()
    forced = await promote(engine, files["candidate"], files["live"], force=True)
    assert forced.swapped and engine.info.bundle_hash == "new" and files["previous"].read_bytes() == b"old model"
    await engine.close()


async def test_promote_without_a_live_model(files) -> None:
    files["live"].unlink()
    engine = promoting_engine(live_bpc=1.0, candidate_bpc=9.0)
    promotion = await promote(engine, files["candidate"], files["live"])
    assert promotion.swapped and promotion.live is None and engine.info.bundle_hash == "new"
    assert files["live"].read_bytes() == b"new model" and not files["previous"].exists()
    await engine.close()


async def test_a_candidate_the_engine_refuses_changes_nothing(files) -> None:
    def loader(path: Path, device: str) -> StandInSampler:
        if path == files["candidate"]:
            raise BundleError(f"{path}: refused by this test's engine")
        return StandInSampler("old", bpc=9.0)

    engine = Engine(loader=loader, torch_threads=1)
    await engine.load(files["live"])
    with pytest.raises(BundleError, match="refused"):
        await promote(engine, files["candidate"], files["live"], force=True)
    assert engine.info.bundle_hash == "old"
    assert files["live"].read_bytes() == b"old model" and files["candidate"].read_bytes() == b"new model"
    assert not files["previous"].exists()
    await engine.close()


async def test_a_move_that_fails_is_rolled_back(files) -> None:
    engine = promoting_engine(live_bpc=5.0, candidate_bpc=4.0)
    await engine.load(files["live"])
    files["previous"].write_bytes(b"older model")
    files["candidate"].unlink()  # loaded (the stand-in reads nothing), then gone: os.replace fails
    promotion = await promote(engine, files["candidate"], files["live"])
    assert promotion.decision.swap and not promotion.swapped and "No such file" in promotion.error
    assert engine.info.bundle_hash == "old" and files["live"].read_bytes() == b"old model"
    assert files["previous"].read_bytes() == b"older model"  # not even *.previous changed
    assert sorted(p.name for p in files["live"].parent.iterdir()) == ["lyrics.previous.pt", "lyrics.pt"]
    await engine.close()


def test_decide_swap() -> None:
    assert decide_swap(None, {"bpc": 9.0}, force=False).swap
    assert decide_swap({"bpc": 5.0}, {"bpc": 4.0}, force=False).swap
    worse = decide_swap({"bpc": 4.0}, {"bpc": 5.0}, force=False)
    assert not worse.swap and "4.000" in decision_text(worse) and "5.000" in decision_text(worse)
    assert decide_swap({"bpc": 4.0}, {"bpc": 5.0}, force=True).swap
    assert not decide_swap({"bpc": 4.0}, {"bpc": 4.0}, force=False).swap  # a tie keeps what is known to work
    assert not decide_swap({"bpc": 4.0}, {"bpc": float("nan")}, force=False).swap


# ---------------------------------------------------------------------------------------------
# scores compare on the same held-out text only: a live model scored on another is re-scored first


def on_corpus(sampler: StandInSampler, corpus_sha256: str) -> StandInSampler:
    sampler.bundle = dataclasses.replace(sampler.bundle, corpus_sha256=corpus_sha256)
    return sampler


async def test_a_live_model_scored_on_other_heldout_text_is_rescored_before_the_decision(files) -> None:
    samplers = {
        # Scored 3.0 on its own (other) held-out text, which would beat the candidate's 5.0 ...
        "lyrics": on_corpus(StandInSampler("old", bpc=3.0), "old corpus"),
        "lyrics.candidate": on_corpus(StandInSampler("new", bpc=5.0), "new corpus"),
    }
    engine = make_engine(samplers)
    await engine.load(files["live"])
    calls = []

    def rescore(live, candidate):
        calls.append((live.sha256, candidate.sha256, threading.current_thread().name))
        return {"bpc": 6.0, "corpus_sha256": candidate.corpus_sha256}  # ... but scores 6.0 on the candidate's

    promotion = await promote(engine, files["candidate"], files["live"], rescore=rescore)
    [(live, candidate, thread)] = calls
    assert (live, candidate) == ("old", "new") and thread.startswith("lyrics-engine")  # the model's own thread
    assert promotion.rescored == {"bpc": 6.0, "corpus_sha256": "new corpus"} and promotion.live_metrics["bpc"] == 6.0
    assert promotion.swapped and "5.000 < 6.000" in decision_text(promotion.decision)
    await engine.close()


async def test_the_same_heldout_text_needs_no_rescore(files) -> None:
    samplers = {
        "lyrics": on_corpus(StandInSampler("old", bpc=3.0), "same"),
        "lyrics.candidate": on_corpus(StandInSampler("new", bpc=5.0), "same"),
    }
    engine = make_engine(samplers)
    await engine.load(files["live"])
    promotion = await promote(engine, files["candidate"], files["live"], rescore=lambda live, new: pytest.fail())
    assert promotion.rescored is None and not promotion.swapped and promotion.live_metrics["bpc"] == 3.0
    await engine.close()


async def test_a_failed_rescore_keeps_the_live_model_unless_forced(files) -> None:
    samplers = {
        "lyrics": on_corpus(StandInSampler("old", bpc=9.0), "old corpus"),
        "lyrics.candidate": on_corpus(StandInSampler("new", bpc=1.0), "new corpus"),
    }
    engine = make_engine(samplers)
    await engine.load(files["live"])

    def rescore(live, candidate):
        raise CorpusError("data/jaychou_lyrics.txt.zip: no such file")

    kept = await promote(engine, files["candidate"], files["live"], rescore=rescore)
    assert not kept.swapped and kept.rescore_error == "data/jaychou_lyrics.txt.zip: no such file"
    assert "cannot be compared" in decision_text(kept.decision) and engine.info.bundle_hash == "old"
    forced = await promote(engine, files["candidate"], files["live"], force=True, rescore=rescore)
    assert forced.swapped and engine.info.bundle_hash == "new"
    await engine.close()


# ---------------------------------------------------------------------------------------------
# the seams: the decision's structure, the engine's primitives, names beside the live bundle


def test_a_decision_carries_its_reason_and_figures() -> None:
    better = decide_swap({"bpc": 5.0}, {"bpc": 4.0}, force=False)
    assert better == SwapDecision(True, Why.BETTER, new_bpc=4.0, old_bpc=5.0)
    assert decide_swap({"bpc": 4.0}, {"bpc": 5.0}, force=False).why is Why.NOT_BETTER
    assert decide_swap({"bpc": 4.0}, {"bpc": 5.0}, force=True).why is Why.FORCED
    assert decide_swap(None, {"bpc": 9.0}, force=False).why is Why.NO_LIVE_MODEL
    assert decide_swap({"bpc": 4.0}, {}, force=False).why is Why.NO_CANDIDATE_SCORE
    assert decide_swap({}, {"bpc": 4.0}, force=False) == SwapDecision(True, Why.NO_LIVE_SCORE, 4.0, None)


def test_every_reason_has_words() -> None:
    for why in Why:
        text = decision_text(SwapDecision(why in {Why.BETTER, Why.FORCED}, why, 4.0, 5.0, error="gone"))
        assert text and text.endswith(".")
    assert "force:true" in decision_text(SwapDecision(False, Why.RESCORE_FAILED, 4.0, error="gone"))
    assert "(gone)" in decision_text(SwapDecision(False, Why.RESCORE_FAILED, 4.0, error="gone"))


def test_same_heldout_needs_the_same_corpus_and_split() -> None:
    base = StandInSampler("a").bundle
    assert same_heldout(base, dataclasses.replace(base, sha256="b"))
    assert not same_heldout(base, dataclasses.replace(base, corpus_sha256="another corpus"))
    other_split = dataclasses.replace(base, train_config={**base.train_config, "heldout_fraction": 0.2})
    assert not same_heldout(base, other_split)


def test_sibling_names_a_file_beside_the_live_bundle() -> None:
    assert sibling(Path("models/lyrics.pt"), "previous") == Path("models/lyrics.previous.pt")
    assert sibling(Path("models/lyrics"), "candidate-ab12") == Path("models/lyrics.candidate-ab12.pt")


async def test_a_loaded_candidate_serves_only_once_it_goes_live(files) -> None:
    engine = promoting_engine(live_bpc=5.0, candidate_bpc=4.0)
    await engine.load(files["live"])
    sampler = await engine.load_candidate(files["candidate"])
    assert sampler.bundle.sha256 == "new" and engine.info.bundle_hash == "old"
    assert (await engine.generate(request("x"))).sample.text == "old:x"
    info = engine.go_live(sampler, files["live"])
    assert info.bundle_hash == "new" and info.path == files["live"] and engine.info is info
    assert (await engine.generate(request("y"))).sample.text == "new:y"
    assert await engine.on_worker(lambda: threading.current_thread().name) != threading.current_thread().name
    await engine.close()
    with pytest.raises(EngineClosedError):
        await promote(engine, files["candidate"], files["live"])


def test_rescore_on_scores_the_live_model_on_the_candidates_heldout_text(tiny_bundle: Path, tmp_path: Path) -> None:
    live = load_bundle(tiny_bundle)
    candidate = dataclasses.replace(live, train_config={**live.train_config, "heldout_fraction": 0.2}, sha256="new")
    figures = rescore_on(SAMPLE_CORPUS)(live, candidate)
    assert figures["heldout_fraction"] == 0.2 and figures["corpus_sha256"] == candidate.corpus_sha256
    assert figures["bpc"] > 0

    # The corpus file changed while the candidate trained: its held-out text is gone, nothing compares.
    changed = tmp_path / "lyrics.txt"
    changed.write_text(SAMPLE_CORPUS.read_text(encoding="utf-8") + "\n新的一行歌词\n", encoding="utf-8")
    with pytest.raises(ValueError, match="changed while the new model trained"):
        rescore_on(changed)(live, candidate)
