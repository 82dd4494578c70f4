"""hftk.imbalance: class weights learnt from real data files (against scikit-learn's definition) and F1-optimal
thresholds (against an exhaustive search); no weights loaded."""

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.utils.class_weight import compute_class_weight

from hftk import load_recipe
from hftk.data.readers import read_records
from hftk.models.loading import load_tokenizer
from hftk.tasks import get_task
from hftk.tasks.imbalance import DEFAULT_THRESHOLD, best_threshold, tune_thresholds

from ..helpers import DATA, MINILM, SHARED, head

GOEMOTIONS = {"column_names": ["text", "label", "id"], "label_delimiter": ","}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def fitted(tokenizer, path, **fields):
    recipe = load_recipe({"model": MINILM, "data": {}, "class_weights": "balanced", **fields})
    task = get_task(recipe.task)(recipe, tokenizer)
    task.fit(task.read(path))
    return task


def test_single_label_balanced_weights_are_scikit_learns(tokenizer):
    path = DATA / "en/sst2/train.tsv"
    task = fitted(tokenizer, path, task="text-classification", data={"columns": {"text": "sentence"}})
    y = [str(r["label"]) for r in read_records(path).rows]
    assert task.names == ["0", "1"]
    expected = compute_class_weight("balanced", classes=np.array(task.names), y=y)
    assert task.loss_weights() == pytest.approx(expected, rel=1e-12)
    assert task.learnt()["class_weights"] == {"0": pytest.approx(expected[0]), "1": pytest.approx(expected[1])}


def test_multi_label_balanced_pos_weight_is_negatives_over_positives(tokenizer, tmp_path):
    path = head(DATA / "en/goemotions/train.tsv", tmp_path / "train.tsv", 3000, header=False)
    task = fitted(tokenizer, path, task="text-classification", problem_type="multi_label", data=GOEMOTIONS)
    rows = [set(r["label"].split(",")) for r in read_records(path, column_names=GOEMOTIONS["column_names"]).rows]
    y = MultiLabelBinarizer(classes=task.names).fit_transform(rows)
    positives = y.sum(0)
    assert (positives > 0).all()
    assert task.loss_weights() == pytest.approx((len(rows) - positives) / positives, rel=1e-12)


def test_ner_balanced_weights_count_each_labelled_token_once(tokenizer, tmp_path):
    """Against scikit-learn on the labels hftk trains on: with max_length 512 no sentence needs a second window,
    so the training features hold every labelled token exactly once."""
    conll = SHARED / "en/conll2003/train.txt"
    if not conll.is_file():
        pytest.skip(f"CoNLL-2003 is not shipped (licence); not found at {conll}")
    lines = conll.read_text(encoding="utf-8").splitlines(keepends=True)[:3000]
    path = tmp_path / "train.txt"
    path.write_text("".join(lines), encoding="utf-8")
    task = fitted(tokenizer, path, task="token-classification", max_length=512)
    features = task.encode(task.read(path), with_targets=True)
    assert len(set(features["example"])) == len(features["example"])  # one window per sentence
    y = np.array([t for labels in features["labels"] for t in labels if t >= 0])
    assert len(task.names) == 9 and set(y) == set(range(9))
    expected = compute_class_weight("balanced", classes=np.arange(9), y=y)
    assert task.loss_weights() == pytest.approx(expected, rel=1e-12)
    assert task.learnt()["class_weights"]["O"] < 1 < task.learnt()["class_weights"]["I-MISC"]


def test_named_weights_default_to_one_and_ner_types_cover_their_tags(tokenizer, tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nPeter NNP B-NP B-PER\nBlack NNP I-NP I-PER\n")
    ner = fitted(tokenizer, path, task="token-classification", class_weights={"PER": 3, "I-PER": 2, "O": 0.5})
    assert dict(zip(ner.names, ner.loss_weights())) == {
        "O": 0.5, "B-ORG": 1, "I-ORG": 1, "B-PER": 3, "I-PER": 2,  # a tag named itself wins over its type
    }  # fmt: skip
    sst2 = DATA / "en/sst2/dev.tsv"
    cls = fitted(
        tokenizer,
        sst2,
        task="text-classification",
        labels={0: "negative", 1: "positive"},
        data={"columns": {"text": "sentence"}},
        class_weights={"positive": 2.5},
    )
    assert list(cls.loss_weights()) == [1.0, 2.5]


def exhaustive_best_f1(scores, gold):
    """The best F1 of `scores >= t` over every threshold that makes a difference (all at once: thresholds x rows)."""
    chosen = scores[None, :] >= np.unique(scores)[:, None]
    return (2 * (chosen & gold).sum(1) / (chosen.sum(1) + gold.sum())).max()


def test_best_threshold_reaches_the_exhaustive_best_f1():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gold = rng.random(300) < rng.uniform(0.02, 0.5)
        scores = np.round(np.clip(gold * rng.uniform(0, 0.6) + rng.random(300) * 0.5, 0, 1), 2)  # many ties
        t = best_threshold(scores, gold)
        assert 0 < t < 1
        assert f1_score(gold, scores >= t) == pytest.approx(exhaustive_best_f1(scores, gold))
        assert t not in set(scores)  # halfway between two scores, not on one
    assert best_threshold(np.array([0.2, 0.9]), np.array([False, False])) is None


def test_tuned_thresholds_per_label_and_global():
    rng = np.random.default_rng(1)
    gold = rng.random((400, 4)) < [0.3, 0.1, 0.05, 0.0]  # the last label never occurs
    probs = np.clip(gold * 0.3 + rng.random((400, 4)) * 0.6, 0, 1)
    per_label = tune_thresholds(probs, gold, per_label=True)
    assert per_label[3] == DEFAULT_THRESHOLD
    for j in range(3):
        assert f1_score(gold[:, j], probs[:, j] >= per_label[j]) == pytest.approx(
            exhaustive_best_f1(probs[:, j], gold[:, j])
        )
    one = tune_thresholds(probs, gold, per_label=False)
    assert len(set(one)) == 1
    micro = f1_score(gold, probs >= one, average="micro")
    assert micro == pytest.approx(exhaustive_best_f1(probs.reshape(-1), gold.reshape(-1)))
    assert micro >= f1_score(gold, probs >= 0.5, average="micro")
