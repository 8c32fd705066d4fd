"""The song-quality report (model.judge): its columns, targets, table and command."""

import dataclasses
import json
import math

import pytest

from model import judge
from tests.helpers import SAMPLE_CORPUS, run_cli


def _figures(**values: float) -> judge.Figures:
    """A column that meets every target (beside a corpus of 10 characters a line, word-likeness -8.7)."""
    passing = dict(
        songs=60, lines=500, rhyme=0.6, rhyme_distinct=0.6, line_mean=10.0, line_std=4.0, char_auc=0.5,
        syntax_auc=0.5, wordlike=-8.7, verbatim=0.0, novel_ngrams=1.0, loops=0.0, seed_returns=0.2, coherence=1.0,
        coherence_raw=0.09, window_auc=0.5, chorus=0.5, patchwork=0.1,
    )  # fmt: skip
    return judge.Figures(**{**passing, **values})


def test_targets_bound_the_song_figures():
    corpus, targets = _figures(), judge.Targets()
    assert all(targets.check(_figures(), corpus).values())
    assert set(targets.check(_figures(), corpus)) >= {"seed_returns", "coherence", "window_auc", "chorus", "patchwork"}
    failing = {
        "rhyme_distinct": [0.49],
        "seed_returns": [0.14, 0.31, math.nan],  # a band: an echo of the seed overshoots
        "coherence": [0.69, 1.31],
        "window_auc": [0.66, math.nan],
        "chorus": [0.39],
        "patchwork": [0.31],
    }
    for key, values in failing.items():
        for value in values:
            met = targets.check(_figures(**{key: value}), corpus)
            assert [k for k, ok in met.items() if not ok] == [key], (key, value)
    # The rhyme target counts distinct pairs of different lines: a chorus' rhymes sung twice do not lift it.
    assert not targets.check(_figures(rhyme=0.9, rhyme_distinct=0.45), corpus)["rhyme_distinct"]
    for key, value in {"seed_returns": 0.15, "coherence": 1.3, "window_auc": 0.65, "chorus": 0.4}.items():
        assert targets.check(_figures(**{key: value}), corpus)[key], key


def test_the_table_marks_nan_and_names_its_columns_and_the_summary_keeps_the_corpus():
    corpus, shuffled = _figures(coherence=1.0), _figures(coherence=0.0, patchwork=math.nan, window_auc=math.nan)
    report = judge.Report(corpus, shuffled, _figures(), _figures(chorus=0.0), {"chorus": False}, ["song"])
    table = report.table()
    row = next(line for line in table.splitlines() if line.startswith("characters in corpus 5-grams"))
    assert row.split()[-4:] == ["10.0%", "–", "10.0%", "10.0%"]
    assert next(line for line in table.splitlines() if line.startswith("songs with a chorus")).endswith("0%  ✗")
    assert all(f"{name}: " in table for name in ("corpus", "shuffled", "markov", "bundle"))
    assert set(report.to_dict()["columns"]) == {"corpus", "shuffled", "markov", "bundle"}
    kept = judge.summary(report)
    for field in ("seed_returns", "coherence", "coherence_raw", "window_auc", "chorus", "patchwork"):
        assert f"corpus_{field}" in kept and field in kept
    assert kept["chorus"] == 0.0 and kept["corpus_coherence"] == 1.0
    assert not any(key.startswith("shuffled") for key in kept)
    assert dataclasses.asdict(report.bundle) == report.to_dict()["bundle"]
    assert report.to_dict()["shuffled"]["patchwork"] is None


def test_judge_reports_on_a_small_corpus(tiny_bundle):
    result = run_cli("judge", tiny_bundle, "--corpus", SAMPLE_CORPUS, "--songs", "12", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"corpus", "shuffled", "markov", "bundle", "targets", "columns"}
    assert report["bundle"]["songs"] == 12 and report["markov"]["songs"] == 12
    for column in ("corpus", "markov", "bundle"):
        figures = report[column]
        assert 0 <= figures["rhyme"] <= 1 and 0 <= figures["verbatim"] <= 1 and 0 <= figures["loops"] <= 1
        assert figures["line_mean"] > 0
    assert report["corpus"]["char_auc"] == 0.5
    assert 0 <= report["bundle"]["char_auc"] <= 1
    assert report["corpus"]["coherence"] == pytest.approx(1) and report["shuffled"]["coherence"] == pytest.approx(0)
    assert report["shuffled"]["patchwork"] is None and 0 <= report["bundle"]["patchwork"] <= 1  # JSON, no NaN
    for column in ("corpus", "shuffled", "markov", "bundle"):
        assert 0 <= report[column]["seed_returns"] <= 1 and 0 <= report[column]["chorus"] <= 1
    assert set(report["targets"]) == {
        "rhyme_distinct",
        "line_mean",
        "char_auc",
        "syntax_auc",
        "wordlike",
        "verbatim",
        "novel_ngrams",
        "loops",
        "seed_returns",
        "coherence",
        "window_auc",
        "chorus",
        "patchwork",
    }
    table = run_cli("judge", tiny_bundle, "--corpus", SAMPLE_CORPUS, "--songs", "10")
    assert "adjacent lines that rhyme" in table.stdout and "targets met" in table.stdout
    assert "songs with a chorus" in table.stdout and "shuffled: " in table.stdout


def test_judge_refuses_too_few_songs(tiny_bundle):
    result = run_cli("judge", tiny_bundle, "--corpus", SAMPLE_CORPUS, "--songs", "3")
    assert result.returncode != 0 and "at least 10" in result.stderr


def test_judge_writes_from_the_seeds_it_is_given(tiny_bundle):
    """An outside check judges on seeds the report never uses: each song starts from one of them."""
    seeds = ["雨落在", "天的雨"]
    assert not set(seeds) & set(judge.SEEDS)
    result = run_cli("judge", tiny_bundle, "--corpus", SAMPLE_CORPUS, "--songs", "10", "--seeds", *seeds, "--json")
    assert result.returncode == 0, result.stderr
    examples = json.loads(result.stdout)["examples"]
    assert examples and all(any(song.startswith(seed) for seed in seeds) for song in examples)
    assert examples[0].startswith(seeds[0]) and examples[1].startswith(seeds[1])  # each seed in turn


def test_judge_refuses_a_bad_seed_before_writing(tiny_bundle):
    result = run_cli("judge", tiny_bundle, "--corpus", SAMPLE_CORPUS, "--songs", "10", "--seeds", "雨" * 1001)
    assert result.returncode != 0 and "1001 characters" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("judge", "no-such-bundle.pt", "--corpus", SAMPLE_CORPUS, "--seeds", "雨" * 1001)
    assert missing.returncode != 0 and "1001 characters" in missing.stderr  # said before loading anything
