"""NER adapter on real data: CoNLL and span readers, schemes, windows, round trips, errors (without training);
then trained models whose output directories agree with transformers' pipeline (English CoNLL, Japanese)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import hftk
from hftk import HftkError, Predictor, load_recipe, train
from hftk.data.readers import read_records
from hftk.models.loading import load_tokenizer
from hftk.tasks import get_task
from hftk.tasks.windows import merge_windows

from ..helpers import DATA, MINILM, ROOT, SHARED

CONLL = SHARED / "en/conll2003"
needs_conll = pytest.mark.skipif(
    not CONLL.is_dir(), reason=f"CoNLL-2003 is not shipped (licence); not found at {CONLL}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def make(tokenizer, **fields):
    recipe = load_recipe({"task": "token-classification", "model": MINILM, "data": {}, **fields})
    return get_task("token-classification")(recipe, tokenizer)


def one_hot(task, features):
    """Model outputs that predict exactly the gold label of every labelled token (O elsewhere)."""
    outs = []
    for labels in features["labels"]:
        a = np.zeros((len(labels), len(task.names)), dtype=np.float32)
        a[np.arange(len(labels)), np.maximum(labels, 0)] = 5.0
        outs.append(a)
    return outs


def spans_of(predictions):
    return [[(e["start"], e["end"], e["type"]) for e in p["entities"]] for p in predictions]


@needs_conll
def test_conll_reader_on_the_real_file(tokenizer):
    task = make(tokenizer)
    recs = task.read(CONLL / "valid.txt")
    assert len(recs) == 3250  # sentences, -DOCSTART- lines skipped
    assert recs.rows[0]["tokens"][:3] == ["CRICKET", "-", "LEICESTERSHIRE"] and recs.lines[0] == 3
    task.fit(task.read(CONLL / "train.txt"))
    assert task.types == ["LOC", "MISC", "ORG", "PER"]
    assert task.names == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert task.summary(recs) == {"labels": {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}}


@needs_conll
@pytest.mark.parametrize("all_subtokens", [True, False])
def test_windows_merge_back_to_the_whole_input(tokenizer, all_subtokens):
    """Tiny windows (16 tokens, 4 shared) over every dev sentence: gold in, the same spans and a perfect score out."""
    task = make(tokenizer, max_length=16, stride=4, label_all_subtokens=all_subtokens)
    task.fit(task.read(CONLL / "train.txt"))
    recs = task.read(CONLL / "valid.txt")
    feats = task.encode(recs, with_targets=True)
    assert len(feats["input_ids"]) > 2 * len(recs) and max(map(len, feats["input_ids"])) == 16
    outs = one_hot(task, feats)
    assert task.score(recs, feats, outs)["f1"] == 1.0
    gold = [sorted(spans) for spans in task.targets(recs)]
    strategy = "simple" if all_subtokens else "first"
    assert spans_of(task.postprocess(recs, feats, outs, aggregation_strategy=strategy)) == gold
    whole = tokenizer(
        [" ".join(r["tokens"]) for r in recs.rows[:200]], add_special_tokens=False, return_offsets_mapping=True
    )
    merged = merge_windows(feats, outs, len(recs))
    assert [m.offsets for m in merged[:200]] == [[tuple(o) for o in offs] for offs in whole["offset_mapping"]]


@needs_conll
def test_first_subtoken_labels_only_word_starts(tokenizer):
    task = make(tokenizer, label_all_subtokens=False)
    task.fit(task.read(CONLL / "train.txt"))
    recs = task.read(CONLL / "valid.txt")
    feats = task.encode(recs, with_targets=True)
    tokens = tokenizer.convert_ids_to_tokens(feats["input_ids"][0])  # CRICKET - LEICESTERSHIRE TAKE OVER ...
    labels = [task.names[i] if i >= 0 else None for i in feats["labels"][0]]
    assert tokens[:5] == ["[CLS]", "cricket", "-", "leicestershire", "take"] or "##" in "".join(tokens)
    pairs = list(zip(tokens, labels))
    first = next(k for k, t in enumerate(tokens) if t.startswith("le"))
    assert pairs[first][1] == "B-ORG"
    assert all(label is None for t, label in pairs if t.startswith("##") or t in ("[CLS]", "[SEP]"))
    assert all(label is not None for t, label in pairs[1:-1] if not t.startswith("##"))


def test_japanese_span_round_trip_on_every_entity(ja_fixture):
    """Stockmark NER (all 5,343 records): span -> token labels -> span gives back every entity whose
    boundaries fall on token boundaries; the others are counted, not hidden."""
    tok = load_tokenizer(str(ja_fixture))
    recipe = load_recipe(
        {"task": "token-classification", "model": str(ja_fixture), "data": {}, "max_length": 128, "stride": 32}
    )
    task = get_task("token-classification")(recipe, tok)
    recs = [task.read(DATA / "ja/ner_wikipedia/train.json"), task.read(DATA / "ja/ner_wikipedia/dev.json")]
    task.fit(recs[0])
    total = aligned = back = 0
    for r in recs:
        feats = task.encode(r, with_targets=True)
        outs = one_hot(task, feats)
        predicted = spans_of(task.postprocess(r, feats, outs))
        for gold, pred, tokens in zip(task.targets(r), predicted, merge_windows(feats, outs, len(r))):
            starts = {s for s, _ in tokens.offsets}
            ends = {e for _, e in tokens.offsets}
            for span in gold:
                total += 1
                if span[0] in starts and span[1] in ends:
                    aligned += 1
                    back += span in pred
    print(f"\nstockmark NER: {total} entities, {aligned} on token boundaries, {total - aligned} not")
    assert total == 13185
    assert back == aligned
    assert aligned / total > 0.9


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        ([{"name": "東京", "span": [20, 40], "type": "地名"}], "is outside the text (length 10)"),
        ([{"name": "東京", "span": [1, 3], "type": "地名"}], "covers '京都', but its name is '東京'"),
        ([{"span": [0, 2], "type": "地名"}, {"span": [1, 3], "type": "地名"}], "overlap; nested entities"),
        ([{"span": [0, 2]}], "needs span: [start, end] (or start, end) and type"),
        ([{"span": [0, 2], "type": "人名"}], "entity type '人名' is not among the training types (地名)"),
    ],
)
def test_bad_spans_name_file_and_line(tokenizer, tmp_path, entities, message):
    train = tmp_path / "train.jsonl"
    train.write_text(
        json.dumps({"text": "東京都に住む山田さん", "entities": [{"span": [0, 2], "type": "地名"}]}) + "\n"
    )
    dev = tmp_path / "dev.jsonl"
    rows = [{"text": "大阪に行く", "entities": []}, {"text": "東京都に住む山田さん", "entities": entities}]
    dev.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    task = make(tokenizer)
    task.fit(task.read(train))
    with pytest.raises(HftkError) as e:
        task.targets(task.read(dev))
    assert str(e.value).startswith(f"{dev}:2: ") and message in str(e.value)


def test_bad_conll_names_the_line(tokenizer, tmp_path):
    good = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    p = tmp_path / "ragged.txt"
    p.write_text(good + "Blackburn I-PER\n")
    with pytest.raises(HftkError, match=r"ragged.txt:5: 2 columns, the sentence's first line has 4"):
        make(tokenizer).read(p)
    p.write_text(good + "Blackburn NNP I-NP PER\n")
    task = make(tokenizer)
    with pytest.raises(HftkError, match=r"ragged.txt:5: tag 'PER' is not IOB2"):
        task.fit(task.read(p))
    p.write_text("-DOCSTART- -X- -X- O\n\nEU B-ORG\nrejects O\n\nParis B-LOC\nis O\nnice B-FOOD\n")
    task = make(tokenizer, labels=["ORG", "LOC"])
    with pytest.raises(HftkError, match=r"ragged.txt:8: entity type 'FOOD' is not among the training types"):
        task.targets(task.read(p))


def test_token_lists_with_numeric_tags(tokenizer, tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps({"words": ["Angela", "Merkel", "visited", "Paris"], "ner": [1, 2, 0, 3]}) + "\n")
    fields = {"data": {"columns": {"tokens": "words", "tags": "ner"}}}
    with pytest.raises(HftkError, match=r"rows.jsonl:1 \(token 1\): tag 1 is a number without a name"):
        make(tokenizer, **fields).fit(make(tokenizer, **fields).read(p))
    task = make(tokenizer, tag_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], **fields)
    recs = task.read(p)
    task.fit(recs)
    assert task.targets(recs) == [[(0, 13, "PER"), (22, 27, "LOC")]]


# ---------------------------------------------------------------------------------------- trained models


def conll_head(src, dst, sentences):
    """The first n sentences of a CoNLL file."""
    out, n = [], 0
    for line in src.read_text(encoding="utf-8").splitlines(keepends=True):
        out.append(line)
        if not line.strip() and out[-2:-1] != ["-DOCSTART- -X- -X- O\n"]:
            n += 1
            if n > sentences:
                break
    dst.write_text("".join(out), encoding="utf-8")
    return dst


def fitting(model_dir, texts):
    """The texts that fit in one window: longer ones hftk splits into windows, the pipeline sees up to 512 tokens."""
    tokenizer = hftk.load_tokenizer(str(model_dir))
    max_length = hftk.load_recipe(model_dir / "recipe.yaml").max_length
    return [t for t in texts if len(tokenizer(t)["input_ids"]) <= max_length]


def pipeline_spans(results):
    return [[(e["entity_group"], e["start"], e["end"]) for e in r] for r in results]


def hftk_spans(results):
    return [[(e["type"], e["start"], e["end"]) for e in r["entities"]] for r in results]


@pytest.fixture(scope="module")
def conll_model(tmp_path_factory):
    if not CONLL.is_dir():
        pytest.skip(f"CoNLL-2003 is not shipped (licence); not found at {CONLL}")
    d = tmp_path_factory.mktemp("conll")
    out = d / "model"
    result = train(
        ROOT / "recipes/conll2003-minilm.yaml",
        overrides={
            "data.train": str(conll_head(CONLL / "train.txt", d / "train.txt", 2000)),
            "data.validation": str(conll_head(CONLL / "valid.txt", d / "valid.txt", 300)),
            "max_length": 64,
            "training.num_train_epochs": 2,
            "training.learning_rate": 1.5e-4,
            "training.warmup_steps": 10,
        },
        output_dir=out,
    )
    return out, result


def test_conll_model_learns_and_reports_entity_metrics(conll_model):
    out, result = conll_model
    metrics = result.metrics["eval"]
    # 2,000 real sentences, two epochs: far above what an untrained head gets (0.0), short of the full run.
    assert metrics["eval_f1"] > 0.6
    assert {"eval_precision", "eval_recall", "eval_f1_PER", "eval_f1_LOC", "eval_f1_ORG", "eval_f1_MISC"} <= set(
        metrics
    )
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["1"] == "B-LOC" and len(config["id2label"]) == 9
    assert "pipeline_tag: token-classification" in (out / "README.md").read_text()


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_predict_spans_equal_the_transformers_pipeline(conll_model, strategy):
    from transformers import pipeline

    out, _ = conll_model
    recs = hftk.load_recipe(out / "recipe.yaml")
    rows = Predictor(out).task.read(CONLL / "valid.txt").rows[300:500]
    texts = fitting(out, [" ".join(r[recs.data.column("tokens")]) for r in rows])
    assert len(texts) > 190
    pipe = pipeline("token-classification", model=str(out), aggregation_strategy=strategy, device="cpu")
    expected = pipe(texts, batch_size=16)
    got = Predictor(out, precision="fp32").predict(texts, aggregation_strategy=strategy)
    assert hftk_spans(got) == pipeline_spans(expected)
    assert sum(map(len, expected)) > 100  # the sample really has predicted entities to compare
    scores = [e["score"] for r in got for e in r["entities"]]
    assert scores == pytest.approx([float(e["score"]) for r in expected for e in r], abs=1e-4)
    assert all(t[e["start"] : e["end"]] == e["text"] for t, r in zip(texts, got) for e in r["entities"])


def test_cli_predict_and_evaluate(conll_model, tmp_path):
    out, _ = conll_model
    inputs = tmp_path / "in.txt"
    inputs.write_text("Angela Merkel met Emmanuel Macron in Paris on Monday .\n\nThe European Union said so .\n")
    preds = tmp_path / "entities.jsonl"
    run = [sys.executable, "-m", "hftk"]
    proc = subprocess.run(
        [*run, "predict", str(out), "--input", str(inputs), "--output", str(preds)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    # Every line answered, the blank one too (no entities), each row with its line.
    assert [(r["line"], r["text"]) for r in rows] == [
        (1, "Angela Merkel met Emmanuel Macron in Paris on Monday ."),
        (2, ""),
        (3, "The European Union said so ."),
    ]
    assert rows[1]["entities"] == []
    found = {(e["text"], e["type"]) for e in rows[0]["entities"]}
    assert ("Paris", "LOC") in found and {e["type"] for e in rows[0]["entities"]} >= {"PER", "LOC"}
    proc = subprocess.run(
        [*run, "evaluate", str(out), "--data", str(CONLL / "valid.txt"), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["f1"] > 0.6 and {"precision", "recall", "f1_PER"} <= set(metrics)


def test_japanese_ner_on_fixture_agrees_with_pipeline(ja_fixture, tmp_path):
    """Tohoku-format BERT (tiny, real architecture) on real Stockmark NER: offsets from hftk's fast tokenizer."""
    from transformers import pipeline

    def subset(name, n):
        rows = json.loads((DATA / f"ja/ner_wikipedia/{name}.json").read_text(encoding="utf-8"))[:n]
        (tmp_path / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        return str(tmp_path / f"{name}.json")

    out = tmp_path / "ner-ja"
    result = train(
        ROOT / "recipes/ner-wikipedia-ja.yaml",
        overrides={
            "model": str(ja_fixture),
            "data.train": subset("train", 300),
            "data.validation": subset("dev", 100),
            "max_length": 64,
            # A few steps only: the head stays close to its random start and tags entities all over the
            # text, which exercises every grouping path. Learning is shown on English (above).
            "training.max_steps": 4,
            "training.learning_rate": 1e-3,
            "training.warmup_steps": 0,
        },
        output_dir=out,
    )
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_f1_人名"} <= set(result.metrics["eval"])
    texts = fitting(out, [r["text"] for r in read_records(DATA / "ja/ner_wikipedia/dev.json").rows[:200]])
    assert len(texts) > 120
    got = Predictor(out, precision="fp32").predict(texts)
    pipe = hftk.pipeline("token-classification", model=str(out), aggregation_strategy="simple", device="cpu")
    assert pipe.tokenizer.is_fast
    expected = pipe(texts, batch_size=16)
    assert hftk_spans(got) == pipeline_spans(expected)
    assert sum(map(len, expected)) > 100
    assert all(t[e["start"] : e["end"]] == e["text"] for t, r in zip(texts, got) for e in r["entities"])
    # Plain transformers still loads the directory (its slow BertJapaneseTokenizer has no offsets).
    slow = pipeline("token-classification", model=str(out), device="cpu")
    assert not slow.tokenizer.is_fast and len(slow(texts[0])) > 0


@needs_conll
def test_balanced_class_weights_train_end_to_end(tmp_path):
    """The CoNLL recipe with `class_weights: balanced`: tag weights from train's labelled tokens, a weighted loss
    through a few real training steps, and the weights in metrics.json and the model card."""
    out = tmp_path / "ner"
    result = train(
        ROOT / "recipes/conll2003-minilm.yaml",
        overrides={
            "data.train": str(conll_head(CONLL / "train.txt", tmp_path / "train.txt", 160)),
            "data.validation": str(conll_head(CONLL / "valid.txt", tmp_path / "valid.txt", 40)),
            "class_weights": "balanced",
            "max_length": 32,
            "stride": 8,
            "training.max_steps": 4,
            "training.per_device_train_batch_size": 16,
            "training.warmup_steps": 0,
            "training.eval_strategy": "no",
            "training.save_strategy": "no",
            "training.load_best_model_at_end": False,
        },
        output_dir=out,
    )
    weights = result.metrics["class_weights"]
    assert list(weights) == ["O", *(f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI")]
    assert weights["O"] < 0.2 and all(w > 1 for tag, w in weights.items() if tag != "O")  # O is most tokens
    assert json.loads((out / "metrics.json").read_text())["class_weights"] == weights
    assert np.isfinite(result.metrics["train"]["train_loss"]) and "eval_f1" in result.metrics["eval"]
    card = (out / "README.md").read_text()
    assert (
        "Class weights of the cross-entropy loss (`class_weights`, balanced: from train's label counts): `O` " in card
    )
    assert "class_weights: balanced" in (out / "recipe.yaml").read_text()
    assert "entities" in Predictor(out).predict(["EU rejects German call to boycott British lamb."])[0]
