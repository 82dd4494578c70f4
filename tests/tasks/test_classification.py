"""Classification adapter on real rows, without loading weights: labels, targets, errors, decoding; the
Japanese pair-classification recipe end to end on the Tohoku-format fixture (pipeline() with the slow tokenizer);
and multi-label thresholds tuned on validation, saved and used by predict and evaluate (real MiniLM)."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

import hftk
from hftk import HftkError, Predictor, load_recipe
from hftk.data.readers import read_records
from hftk.models.loading import load_tokenizer
from hftk.tasks import get_task

from ..helpers import DATA, MINILM, head


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def make(tokenizer, **fields):
    recipe = load_recipe({"task": "text-classification", "model": MINILM, "data": {}, **fields})
    return get_task("text-classification")(recipe, tokenizer)


def test_label_vocabulary_from_train_in_natural_order(tokenizer, tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("text\tlabel\na\t10\nb\t2\nc\t2\nd\tneg\n")
    task = make(tokenizer)
    task.fit(read_records(p))
    assert task.names == ["2", "10", "neg"]
    assert task.model_kwargs()["id2label"] == {0: "2", 1: "10", 2: "neg"}


def test_label_mapping_gives_names(tokenizer):
    task = make(tokenizer, labels={0: "negative", 1: "positive"}, data={"columns": {"text": "sentence"}})
    recs = read_records(DATA / "en/sst2/dev.tsv")
    task.fit(recs)
    assert task.names == ["negative", "positive"]
    feats = task.encode(recs, with_targets=True)
    assert feats["labels"][:3] == [1, 0, 1] and len(feats["input_ids"]) == 872
    assert task.summary(recs) == {"labels": {"negative": 428, "positive": 444}}


def test_unseen_validation_label_names_file_line_and_label(tokenizer, tmp_path):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("text\tlabel\ngood\tpos\nbad\tneg\n")
    dev.write_text("text\tlabel\nfine\tpos\nmeh\tneutral\nugh\tneutral\n")
    task = make(tokenizer)
    task.fit(read_records(train))
    with pytest.raises(HftkError) as e:
        task.targets(read_records(dev))
    assert str(e.value).startswith(f"{dev}:3: label 'neutral' is not among the training labels (neg, pos)")


def test_sentence_pairs_use_both_columns(tokenizer):
    task = make(tokenizer, data={"columns": {"text": "#1 String", "text_pair": "#2 String", "label": "Quality"}})
    recs = read_records(DATA / "en/mrpc/dev.tsv")
    task.fit(recs)
    feats = task.encode(recs, with_targets=False)
    # token_type_ids switch to 1 for the second sentence
    assert all(1 in t for t in feats["token_type_ids"]) and "labels" not in feats


def test_multi_label_from_delimited_ids(tokenizer):
    names = (DATA / "en/goemotions/labels.txt").read_text().split()
    task = make(
        tokenizer,
        problem_type="multi_label",
        labels=dict(enumerate(names)),
        data={"column_names": ["text", "label", "id"], "label_delimiter": ","},
    )
    recs = read_records(DATA / "en/goemotions/dev.tsv", column_names=["text", "label", "id"])
    y = np.asarray(task.targets(recs))
    assert y.shape == (5426, 28)
    assert (y.sum(1) >= 1).all() and (y.sum(1) > 1).sum() == 878  # multi-label rows, per SOURCE.md
    assert task.model_kwargs()["problem_type"] == "multi_label_classification"


def test_multi_label_without_delimiter_is_an_error(tokenizer, tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("text\tlabel\nhi\tjoy,love\n")
    task = make(tokenizer, problem_type="multi_label")
    with pytest.raises(HftkError, match=r"m.tsv:2: .* set data.label_delimiter"):
        task.fit(read_records(p))


def test_regression_targets_and_bad_value(tokenizer, tmp_path):
    task = make(
        tokenizer,
        problem_type="regression",
        data={"columns": {"text": "sentence1", "text_pair": "sentence2", "label": "score"}},
    )
    y = task.targets(read_records(DATA / "en/stsb/dev.tsv"))
    assert len(y) == 1500 and min(y) == 0.0 and max(y) == 5.0
    p = tmp_path / "s.tsv"
    p.write_text("sentence1\tsentence2\tscore\na\tb\t4.2\nc\td\thigh\n")
    with pytest.raises(HftkError, match=r"s\.tsv:3: regression label 'high' is not a number"):
        task.targets(read_records(p))


def test_decode_and_metrics(tokenizer):
    task = make(tokenizer, labels=["neg", "pos", "neu"])
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    out = task.decode(logits, top_k=2)
    assert [o["label"] for o in out] == ["neg", "neu"]
    assert out[0]["score"] == pytest.approx(np.exp(2) / (np.exp(2) + 2))
    assert [x["label"] for x in out[1]["top_k"]] == ["neu", "neg"]
    m = task.metrics(logits, np.array([0, 1]))
    assert m["accuracy"] == 0.5


def test_multi_label_decode_uses_threshold(tokenizer):
    task = make(tokenizer, problem_type="multi_label", labels=["a", "b", "c"], threshold=0.6)
    out = task.decode(np.array([[2.0, 0.1, -3.0]]))  # sigmoid: 0.88, 0.52, 0.05
    assert out[0]["labels"] == ["a"] and [s["label"] for s in out[0]["scores"]] == ["a", "b", "c"]


# ------------------------------------------------------------------------------ trained: Japanese pairs (JSICK)


def test_jsick_recipe_trains_on_fixture_and_loads_in_pipeline(jsick_model):
    from transformers import AutoTokenizer, pipeline

    out = jsick_model
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"eval_accuracy", "eval_f1_macro"} <= set(metrics["eval"])
    # Saved in the Tohoku on-disk format: plain transformers loads the slow BertJapaneseTokenizer.
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertJapaneseTokenizer" and not (out / "tokenizer.json").exists()
    assert type(AutoTokenizer.from_pretrained(out)).__name__ == "BertJapaneseTokenizer"

    recipe = load_recipe(out / "recipe.yaml")
    records = read_records(DATA / "ja/jsick/test_head1000.tsv")
    pairs = [{"text": r["sentence_A_Ja"], "text_pair": r["sentence_B_Ja"]} for r in records.rows[:40]]
    # The slow tokenizer gives the second sentence its segment ids, as hftk's fast one trained the model with.
    slow = AutoTokenizer.from_pretrained(out)(pairs[0]["text"], pairs[0]["text_pair"])
    assert slow["token_type_ids"] == load_tokenizer(str(out))(pairs[0]["text"], pairs[0]["text_pair"])["token_type_ids"]
    assert 1 in slow["token_type_ids"]
    expected = pipeline("text-classification", model=str(out), device="cpu", top_k=None)(pairs)
    got = Predictor(out, precision="fp32").predict(
        [{recipe.data.column("text"): p["text"], recipe.data.column("text_pair"): p["text_pair"]} for p in pairs],
        top_k=3,
    )
    assert [g["label"] for g in got] == [e[0]["label"] for e in expected]
    for g, e in zip(got, expected):  # same scores: same inputs, segment ids included
        assert [s["score"] for s in g["top_k"]] == pytest.approx([s["score"] for s in e], abs=1e-4)
    fast = hftk.pipeline("text-classification", model=str(out), device="cpu")
    assert fast.tokenizer.is_fast and [r["label"] for r in fast(pairs)] == [e[0]["label"] for e in expected]
    one, theirs = fast(pairs[0]), pipeline("text-classification", model=str(out), device="cpu")(pairs[0])
    assert type(one) is type(theirs) and one["label"] == theirs["label"]  # one pair: one answer, as transformers'


def test_tuned_thresholds_are_saved_and_used_by_predict_and_evaluate(tmp_path):
    """A short real GoEmotions run with `threshold: tuned` and balanced class weights (BCE pos_weight)."""
    names = (DATA / "en/goemotions/labels.txt").read_text().split()
    data = {
        "train": str(head(DATA / "en/goemotions/train.tsv", tmp_path / "train.tsv", 480, header=False)),
        "validation": str(head(DATA / "en/goemotions/dev.tsv", tmp_path / "dev.tsv", 200, header=False)),
        "column_names": ["text", "label", "id"],
        "label_delimiter": ",",
    }
    out = tmp_path / "go"
    result = hftk.train(
        {
            "task": "text-classification",
            "model": MINILM,
            "problem_type": "multi_label",
            "labels": dict(enumerate(names)),
            "threshold": "tuned",
            "class_weights": "balanced",
            "data": data,
            "max_length": 32,
            "training": {
                "max_steps": 30,
                "per_device_train_batch_size": 16,
                "learning_rate": 1e-4,
                **{"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False},
            },
            "output_dir": str(out),
        }
    )
    tuned = json.loads((out / "config.json").read_text())["hftk_thresholds"]
    assert set(tuned) == set(names) and all(0 < t < 1 for t in tuned.values())
    assert len(set(tuned.values())) > 5  # per label, not one number
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["thresholds"] == pytest.approx(tuned) and result.metrics["thresholds"] == saved["thresholds"]
    assert len(saved["class_weights"]) == 28 and saved["class_weights"]["grief"] > saved["class_weights"]["neutral"]
    card = (out / "README.md").read_text()
    assert "tuned on the validation split for each label's own F1" in card and "| grief | " in card
    assert "Class positive-label weights (BCE pos_weight) (`class_weights`, balanced" in card

    texts = [r["text"] for r in read_records(tmp_path / "dev.tsv", column_names=data["column_names"]).rows]
    preds = Predictor(out).predict(texts)
    for row in preds:  # every label whose score reaches its own threshold, and only those
        assert set(row["labels"]) == {s["label"] for s in row["scores"] if s["score"] >= tuned[s["label"]]}
    fixed = Predictor(out, threshold=0.5).predict(texts)  # a number in place of `tuned` wins
    assert [p["scores"] for p in fixed] == [p["scores"] for p in preds]
    assert [p["labels"] for p in fixed] != [p["labels"] for p in preds]

    # evaluate scores the labels predict chooses (the tuned thresholds), not those of 0.5
    dev = tmp_path / "dev.tsv"
    metrics = hftk.evaluate(out, dev)
    gold = [set(str(r["label"]).split(",")) for r in read_records(dev, column_names=data["column_names"]).rows]
    as_ids = {name: str(i) for i, name in enumerate(names)}
    chosen = [{as_ids[n] for n in p["labels"]} for p in preds]
    binarize = MultiLabelBinarizer(classes=[str(i) for i in range(28)]).fit
    expected = f1_score(binarize(gold).transform(gold), binarize(gold).transform(chosen), average="micro")
    assert metrics["f1_micro"] == pytest.approx(expected)
    assert metrics != hftk.evaluate(out, dev, recipe_overrides={"threshold": 0.5})
