"""hftk.metrics by hand: classification, regression, entities, perplexity, SQuAD/JSQuAD answers and ROUGE, each
number worked out in a comment."""

import math

import numpy as np
import pytest

from hftk.tasks import metrics
from hftk.tasks.metrics import rouge, rouge_units

# ------------------------------------------------------------------------------------ classification, regression


def test_single_label_accuracy_and_f1_hand_checked():
    # gold 0 1 0 0 1, predicted 0 1 1 1 1: 3 of 5 right -> accuracy 0.6.
    # class 1: TP 2, FP 2, FN 0 -> P 1/2, R 1, F1 2/3 (GLUE's binary "f1" is this one)
    # class 0: TP 1, FP 0, FN 2 -> P 1, R 1/3, F1 1/2; macro (2/3 + 1/2) / 2 = 7/12
    m = metrics.single_label(np.array([0, 1, 1, 1, 1]), np.array([0, 1, 0, 0, 1]), 2)
    assert m == {"accuracy": pytest.approx(0.6), "f1_macro": pytest.approx(7 / 12), "f1": pytest.approx(2 / 3)}
    # Three labels: no binary "f1". gold 0 1 1 2, predicted 0 2 1 2 -> accuracy 3/4;
    # F1 per class: 0 -> 1, 1 -> P 1 R 1/2 -> 2/3, 2 -> P 1/2 R 1 -> 2/3; macro (1 + 2/3 + 2/3) / 3 = 7/9
    pred, gold = np.array([0, 2, 1, 2]), np.array([0, 1, 1, 2])
    assert metrics.single_label(pred, gold, 3) == {"accuracy": 0.75, "f1_macro": pytest.approx(7 / 9)}
    # A fourth label seen in neither has no F1 (0/0: scikit-learn's zero_division would call it 0 and drag the
    # mean to 7/12): it is left out of the macro average, which stays 7/9.
    assert metrics.single_label(pred, gold, 4)["f1_macro"] == pytest.approx(7 / 9)
    # Binary, and no row has label 1 in gold or predicted: F1 of label 1 is 0/0, undefined, not 0.
    m = metrics.single_label(np.array([0, 0]), np.array([0, 0]), 2)
    assert (m["accuracy"], m["f1_macro"], m["f1"]) == (1.0, 1.0, None) and "no row has label 1" in m["f1_undefined"]
    # One false positive and no gold positive: F1 = 2TP / (2TP + FP + FN) = 0, defined.
    assert metrics.single_label(np.array([1, 0]), np.array([0, 0]), 2)["f1"] == 0.0


def test_multi_label_hand_checked():
    # rows [1 0 1] vs gold [1 0 0], and [0 1 0] vs gold [0 1 0]
    # micro: TP 2, FP 1, FN 0 -> P 2/3, R 1 -> F1 0.8
    # macro: label 0 F1 1, label 1 F1 1, label 2 (one false positive, no gold) F1 0 -> 2/3
    # exact match: the second row only -> 1/2
    m = metrics.multi_label(np.array([[1, 0, 1], [0, 1, 0]]), np.array([[1, 0, 0], [0, 1, 0]]))
    assert m == {"f1_micro": pytest.approx(0.8), "f1_macro": pytest.approx(2 / 3), "exact_match": 0.5}


def test_regression_hand_checked():
    # predicted 1 2 3 4, gold 1 2 3 5: squared errors 0 0 0 1 -> MSE 1/4; the same order -> Spearman 1
    # Pearson: deviations from the means (2.5, 2.75) are -1.5 -0.5 0.5 1.5 and -1.75 -0.75 0.25 2.25:
    # sum of products 6.5, sums of squares 5 and 8.75 -> 6.5 / sqrt(43.75)
    m = metrics.regression(np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 3, 5]))
    assert m == {"mse": 0.25, "pearson": pytest.approx(6.5 / math.sqrt(43.75)), "spearman": pytest.approx(1.0)}
    # Constant predictions (a collapsed head): correlation is undefined (0/0), None with the reason, never 0;
    # MSE (1 + 0 + 1) / 3 is defined.
    m = metrics.regression(np.array([2.0, 2, 2]), np.array([1.0, 2, 3]))
    constant = "the predictions are constant (all 2)"
    assert m == {
        "mse": pytest.approx(2 / 3),
        "pearson": None,
        "pearson_undefined": constant,
        "spearman": None,
        "spearman_undefined": constant,
    }
    assert metrics.regression(np.array([1.0, 2]), np.array([3.0, 3]))["pearson_undefined"].startswith("the gold")
    one = metrics.regression(np.array([1.0]), np.array([2.0]))  # a one-row fold
    assert one["mse"] == 1.0 and one["spearman"] is None and one["spearman_undefined"].startswith("1 row")


def test_entities_hand_checked():
    # gold PER (tokens 0-1) and LOC (3); predicted PER only: P 1/1, R 1/2 -> F1 2/3; tokens right 3 of 4
    m = metrics.entities([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert m == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "accuracy": 0.75,
        "f1_LOC": 0.0,
        "f1_PER": 1.0,
    }
    # BIOES with a PER that never ends (B-I without E): conlleval's lenient reading still finds PER 0-1, so
    # both entities match (F1 1); strict mode drops the malformed PER: P 1/1, R 1/2 -> F1 2/3, f1_PER 0
    gold, pred = [["B-PER", "E-PER", "S-LOC"]], [["B-PER", "I-PER", "S-LOC"]]
    assert metrics.entities(gold, pred)["f1"] == 1.0
    strict = metrics.entities(gold, pred, strict=True)
    assert strict["f1"] == pytest.approx(2 / 3) and strict["f1_PER"] == 0.0 and strict["f1_LOC"] == 1.0
    assert strict["accuracy"] == pytest.approx(2 / 3)  # E-PER vs I-PER: 2 of 3 tags equal


def test_entities_with_nothing_to_find_or_nothing_found_are_undefined():
    # No entity in gold nor predicted: precision, recall and F1 are all 0/0; token accuracy is defined.
    m = metrics.entities([["O", "O"]], [["O", "O"]])
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (None, None, None, 1.0)
    assert m["f1_undefined"] == "no entity in the gold labels or the predictions"
    # A gold PER, nothing predicted: precision is 0/0, recall 0 of 1, F1 0 (defined: 2TP + FP + FN = 1).
    m = metrics.entities([["O", "B-PER"]], [["O", "O"]])
    assert (m["precision"], m["recall"], m["f1"]) == (None, 0.0, 0.0)
    assert m["precision_undefined"] == "no entity predicted"
    # Strict BIOES, a predicted S-PER and no gold entity: recall undefined, precision 0.
    m = metrics.entities([["O", "O"]], [["S-PER", "O"]], strict=True)
    assert (m["precision"], m["recall"], m["recall_undefined"]) == (0.0, None, "no entity in the gold labels")


def test_undefined_values_nan_and_how_they_show():
    m = metrics.defined({"loss": math.nan, "accuracy": 0.5})  # a NaN loss, a mean over nothing
    assert m == {"loss": None, "accuracy": 0.5, "loss_undefined": "not a number (NaN)"}
    assert metrics.shown(m, "loss") == "undefined (not a number (NaN))" and metrics.shown(m, "accuracy") == "0.5000"
    assert metrics.is_reason("loss_undefined", m["loss_undefined"]) and not metrics.is_reason("loss", None)
    assert metrics.squad([], [])["f1"] is None and metrics.rouge([], [])["rougeL_undefined"] == "no rows to score"
    # multi-label with no label anywhere: F1s undefined; exact match (every row right) is 1
    m = metrics.multi_label(np.zeros((2, 3)), np.zeros((2, 3)))
    assert (m["f1_micro"], m["f1_macro"], m["exact_match"]) == (None, None, 1.0)


def test_perplexity_is_exp_of_the_loss():
    assert metrics.perplexity(0.0) == 1.0  # e^0: every token predicted with certainty
    assert metrics.perplexity(math.log(4)) == pytest.approx(4.0)  # as unsure as a fair choice among 4 tokens
    assert metrics.perplexity(1e6) == math.inf  # exp overflows: a diverged model, not an exception


# ------------------------------------------------------------------------------------ question answering


def test_squad_metric_hand_checked():
    assert metrics.squad_normalize("The  Denver Broncos!") == "denver broncos"
    assert metrics.squad(["the Denver Broncos"], [["Denver Broncos"]]) == {"exact_match": 1.0, "f1": 1.0}
    # "denver" vs "denver broncos": P 1, R 1/2 -> F1 2/3; the max over gold answers
    m = metrics.squad(["Denver"], [["Denver Broncos", "Carolina"]])
    assert m["exact_match"] == 0.0 and m["f1"] == pytest.approx(2 / 3)
    # "broncos of denver" vs "denver broncos": 2 shared of 3 and 2 -> P 2/3, R 1 -> F1 0.8
    assert metrics.squad(["Broncos, of Denver!"], [["Denver Broncos"]])["f1"] == pytest.approx(0.8)
    # averaged over questions; a question without answers (v2) wants ""
    m = metrics.squad(["An apple", "", "x"], [["apple"], [], []])
    assert m == {"exact_match": pytest.approx(2 / 3), "f1": pytest.approx(2 / 3)}
    assert metrics.squad(["東京都"], [["東京"]])["f1"] == 0.0  # one "word" each: why Japanese needs JSQuAD's F1


def test_jsquad_metric_hand_checked():
    assert metrics.jsquad(["東京。"], [["東京"]]) == {"exact_match": 1.0, "f1": 1.0}  # trailing 。 dropped
    # characters 東京都 vs 東京: 2 shared -> P 2/3, R 1 -> F1 0.8
    assert metrics.jsquad(["東京都"], [["東京"]]) == {"exact_match": 0.0, "f1": pytest.approx(0.8)}
    # a space is a character: "1960 年" has 6, "1960年" 5, 5 shared -> P 5/6, R 1 -> F1 10/11
    assert metrics.jsquad(["1960 年"], [["1960年", "60年"]])["f1"] == pytest.approx(10 / 11)
    assert metrics.jsquad(["ABC"], [["abc"]])["exact_match"] == 1.0  # lower-cased
    assert metrics.jsquad(["「東京」"], [["東京"]])["exact_match"] == 0.0  # punctuation is kept


# ------------------------------------------------------------------------------------ ROUGE


def test_rouge_english_words_and_japanese_units():
    same = rouge(["The cat sat on the mat."], ["the cat sat on the mat"])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "gen_len": 6.0}
    assert rouge(["cats running"], ["cat runs"])["rouge1"] == 1.0  # stemmed, as the HF summarization examples
    # rouge-score's English tokenizer drops everything but [a-z0-9]: Japanese would score 0 however good.
    assert rouge(["猫が座った"], ["猫が座った"])["rouge1"] == 0.0
    mecab = rouge(["猫が寝た"], ["猫が座った"], "mecab")  # 猫/が/寝/た vs 猫/が/座っ/た
    assert set(mecab) == {"rouge1_mecab", "rouge2_mecab", "rougeL_mecab", "gen_len"}
    assert mecab["rouge1_mecab"] == pytest.approx(0.75) and mecab["rouge2_mecab"] == pytest.approx(1 / 3)
    chars = rouge(["猫が寝た"], ["猫が座った"], "chars")  # 3 of 4 and 3 of 5 characters
    assert chars["rouge1_chars"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert rouge_units(["猫が座った。", "A cat."]) == "words" and rouge_units(["猫が座った。"]) == "mecab"


# ------------------------------------------------------------------------------------------ generated answers


def test_chrf_and_exact_match_of_generated_answers_hand_checked():
    # "ab" against "abc": 1-grams P 2/2, R 2/3; 2-grams P 1/1, R 1/2; no 3-gram in "ab", so 2 orders count:
    # P 1, R (2/3 + 1/2) / 2 = 7/12; F-beta 2: 5 P R / (4 P + R) = (35/12) / (55/12) = 7/11.
    assert metrics.chrf("ab", "abc") == pytest.approx(7 / 11)
    # 猫が座った against 猫がマットに座った: 1-grams P 5/5 R 5/9; 2-grams (猫が 座っ った) P 3/4 R 3/8; 3-grams (座った)
    # P 1/3 R 1/7; 4- and 5-grams none of 2 and 1 (R 0 of 6 and 5); no 6-gram in the answer: 5 orders.
    p, r = (1 + 3 / 4 + 1 / 3) / 5, (5 / 9 + 3 / 8 + 1 / 7) / 5
    assert metrics.chrf("猫が座った", "猫がマットに座った") == pytest.approx(5 * p * r / (4 * p + r))
    assert metrics.chrf("the cat", " the  cat\n") == 1.0  # whitespace is not scored
    assert metrics.chrf("", "abc") == metrics.chrf("xyz", "abc") == 0.0
    assert metrics.exact_match("the cat", " the  cat\n") and not metrics.exact_match("the cat", "The cat")

    scores = metrics.answer_scores(["ab", "the cat"], ["abc", "the cat sat"])
    assert scores["exact_match"].tolist() == [0.0, 0.0] and scores["chrf"][0] == pytest.approx(7 / 11)
    # ROUGE-L of "the cat" against "the cat sat": LCS 2, P 1, R 2/3 -> F1 0.8; "ab" and "abc" share no word.
    assert scores["rougeL"].tolist() == pytest.approx([0.0, 0.8])
