from model.rerank import LineScorer, ScoreWeights


def test_the_candidate_that_fits_the_plan_wins():
    scorer = LineScorer()
    candidates = [
        "我在街角等你很久很久很久",  # -ou rhyme, far too long
        "我在街角等你",  # -i, right length
        "我在街角等候",  # -ou, right length: the best
        "你走",  # -ou, far too short
    ]
    assert scorer.best(candidates, target=6, rhyme="ou") == 2
    # Without a rhyme to hit, the right length wins, the first among equals.
    assert scorer.best(candidates, target=6, rhyme=None) == 1


def test_scores_follow_the_weights():
    rhyme_only = LineScorer(ScoreWeights(rhyme=1.0, length=0.0))
    assert rhyme_only.best(["我在街角等你", "你走"], target=6, rhyme="ou") == 1
    length_only = LineScorer(ScoreWeights(rhyme=0.0, length=1.0))
    assert length_only.best(["你走", "我在街角等你"], target=6, rhyme="ou") == 1
    fits = LineScorer().plan_fit(["我在街角等候"], target=6, rhyme="ou")
    assert fits == [ScoreWeights().rhyme]  # a perfect fit is worth exactly the rhyme bonus


def test_the_line_that_carries_its_keyword_wins_among_equals_but_not_over_the_rhyme():
    scorer = LineScorer()
    assert scorer.best(["我在街角等你", "我在烟雨等你"], target=6, rhyme=None, keyword="烟雨") == 1
    # The rhyme weighs more: a keyword does not make up for a missed rhyme.
    assert scorer.best(["我在街角等候", "我在烟雨等你"], target=6, rhyme="ou", keyword="烟雨") == 0


def test_a_line_cut_off_mid_word_loses_to_one_that_ends_whole():
    scorer = LineScorer()
    # Same length, neither rhymes: the one whose last token seldom ends a corpus line (score -3) loses.
    assert scorer.best(["吹动你的背", "吹动你的心"], target=5, rhyme=None, endings=[-3.0, 0.0]) == 1
    # Without ending scores the first among equals wins, as before.
    assert scorer.best(["吹动你的背", "吹动你的心"], target=5, rhyme=None) == 0
    # A rhyme outweighs even the poorest ending (rhyme 4, ending 1 a unit, at most 3): an asked rhyme holds.
    assert scorer.best(["我在街角等你", "等候在街角"], target=5, rhyme="ao", endings=[0.0, -3.0]) == 1
