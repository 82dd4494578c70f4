"""hftk.spans by hand: the pipeline's span scores (softmax over the context and [CLS], p(start) * p(end)), the
length limit, whole-word widening, and where the no-answer candidate goes."""

import math

import numpy as np
import pytest

from hftk.tasks.spans import best_spans, place_null

CLS = 101
# [CLS] Denver Bron ##cos [SEP] over the context "Denver Broncos": "Bron" and "##cos" are one word.
WINDOW = {
    "input_ids": [[CLS, 7, 8, 9, 102]],
    "context": [[0, 1, 1, 1, 0]],
    "word_ids": [[-1, 0, 1, 1, -1]],
    "offset_mapping": [[(0, 0), (0, 6), (7, 11), (11, 14), (0, 0)]],
}
# exp of the start logits over [CLS] and the context: 1 1 2 1 (sum 5) -> p_start 0.2 0.2 0.4 0.2
# exp of the end logits: 1 1 1 3 (sum 6) -> p_end 1/6 1/6 1/6 1/2; [SEP] takes no part (-inf would be the same)
LOGITS = [(np.array([0, 0, math.log(2), 0, 9.0]), np.array([0, 0, 0, math.log(3), 9.0]))]


def spans(**options):
    settings = {"longest": 3, "keep": 10, "cls_id": CLS, "align_to_words": False, **options}
    found, nulls = best_spans(WINDOW, LOGITS, 0, 1, **settings)
    return sorted(found[0], key=lambda s: (-s[2], s[0], s[1])), nulls


def test_span_scores_hand_checked():
    found, nulls = spans()
    assert nulls == pytest.approx([0.2 / 6])  # [CLS] as start and end: no answer
    # (start token, end token): Bron..##cos 0.4 * 1/2, Denver..##cos 0.2 * 1/2, ##cos 0.2 * 1/2,
    # Bron 0.4 * 1/6, Denver 0.2 * 1/6, Denver..Bron 0.2 * 1/6; end before start: never
    expected = [(7, 14, 0.2), (0, 14, 0.1), (11, 14, 0.1), (7, 11, 1 / 15), (0, 6, 1 / 30), (0, 11, 1 / 30)]
    assert [(a, b) for a, b, _ in found] == [(a, b) for a, b, _ in expected]
    assert [s for *_, s in found] == pytest.approx([s for *_, s in expected])
    best, _ = spans(keep=1)
    assert best == [(7, 14, pytest.approx(0.2))]


def test_longest_limits_the_span_length():
    found, _ = spans(longest=1)  # one token each: ##cos 0.2 * 1/2 beats Bron 0.4 * 1/6
    assert [(a, b) for a, b, _ in found] == [(11, 14), (7, 11), (0, 6)]
    assert found[0][2] == pytest.approx(0.1)


def test_spans_widen_to_whole_words():
    found, _ = spans(align_to_words=True, longest=1)
    # "Bron" and "##cos" alone both widen to "Broncos" (7, 14); the scores stay the tokens' own.
    assert [(a, b) for a, b, _ in found] == [(7, 14), (7, 14), (0, 6)]
    assert [s for *_, s in found] == pytest.approx([0.1, 1 / 15, 1 / 30])


def test_the_no_answer_candidate_goes_where_its_score_puts_it():
    answers = [{"answer": "a", "score": 0.5}, {"answer": "b", "score": 0.2}]

    def order(null_score, threshold=0.0):
        return [a["answer"] for a in place_null(answers, {"answer": "", "score": null_score}, threshold)]

    assert order(0.6) == ["", "a", "b"]
    assert order(0.3) == ["a", "", "b"]
    assert order(0.5) == ["a", "", "b"]  # a tie stays behind: the null answer wins only on a higher score
    assert order(0.1) == ["a", "b", ""]
    # threshold log 2: the null answer must beat twice an answer's score to go before it
    assert order(0.6, math.log(2)) == ["a", "", "b"]
    assert order(1.1, math.log(2)) == ["", "a", "b"]
