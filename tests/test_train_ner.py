"""NER end to end: train on real data, then the output directory agrees with transformers' pipeline."""

import json
import subprocess
import sys

import pytest

import hftk
from hftk import Predictor, train
from hftk.data import read_records

from .conftest import DATA, ROOT, SHARED

CONLL = SHARED / "en/conll2003"


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
    got = Predictor(out).predict(texts, aggregation_strategy=strategy)
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
    assert [r["text"] for r in rows] == [
        "Angela Merkel met Emmanuel Macron in Paris on Monday .",
        "The European Union said so .",
    ]
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
    got = Predictor(out).predict(texts)
    pipe = hftk.pipeline("token-classification", model=str(out), aggregation_strategy="simple", device="cpu")
    assert pipe.tokenizer.is_fast
    expected = pipe(texts, batch_size=16)
    assert hftk_spans(got) == pipeline_spans(expected)
    assert sum(map(len, expected)) > 100
    assert all(t[e["start"] : e["end"]] == e["text"] for t, r in zip(texts, got) for e in r["entities"])
    # Plain transformers still loads the directory (its slow BertJapaneseTokenizer has no offsets).
    slow = pipeline("token-classification", model=str(out), device="cpu")
    assert not slow.tokenizer.is_fast and len(slow(texts[0])) > 0
