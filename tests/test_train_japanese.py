"""The Japanese recipe end to end on the Tohoku-format fixture: train, pipeline() with the slow tokenizer."""

import json

import hftk
from hftk import Predictor, load_recipe
from hftk.data import read_records

from .conftest import DATA


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
    expected = pipeline("text-classification", model=str(out), device="cpu")(pairs)
    got = Predictor(out).predict(
        [{recipe.data.column("text"): p["text"], recipe.data.column("text_pair"): p["text_pair"]} for p in pairs]
    )
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    fast = hftk.pipeline("text-classification", model=str(out), device="cpu")
    assert fast.tokenizer.is_fast and [r["label"] for r in fast(pairs)] == [e["label"] for e in expected]
