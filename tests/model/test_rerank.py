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
