"""The Japanese recipe end to end on the Tohoku-format fixture: train, pipeline() with the slow tokenizer."""

import json

import hftk
from hftk import Predictor, load_recipe, train
from hftk.data import read_records

from .conftest import DATA, ROOT, head


def test_jsick_recipe_trains_on_fixture_and_loads_in_pipeline(ja_fixture, tmp_path):
    from transformers import AutoTokenizer, pipeline

    train_rows = head(DATA / "ja/jsick/train.tsv", tmp_path / "train.tsv", 400)
    dev_rows = head(DATA / "ja/jsick/test_head1000.tsv", tmp_path / "dev.tsv", 100)
    out = tmp_path / "jsick"
    overrides = {
        "model": str(ja_fixture),
        "data.train": str(train_rows),
        "data.validation": str(dev_rows),
        "training.num_train_epochs": 1,
        "training.learning_rate": 5e-4,
    }
    result = train(ROOT / "recipes/jsick-ja.yaml", overrides=overrides, output_dir=out)
    assert {"eval_accuracy", "eval_f1_macro"} <= set(result.metrics["eval"])
    # Saved in the Tohoku on-disk format: plain transformers loads the slow BertJapaneseTokenizer.
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertJapaneseTokenizer" and not (out / "tokenizer.json").exists()
    assert type(AutoTokenizer.from_pretrained(out)).__name__ == "BertJapaneseTokenizer"

    recipe = load_recipe(out / "recipe.yaml")
    records = read_records(dev_rows)
    pairs = [{"text": r["sentence_A_Ja"], "text_pair": r["sentence_B_Ja"]} for r in records.rows[:40]]
    expected = pipeline("text-classification", model=str(out), device="cpu")(pairs)
    got = Predictor(out).predict(
        [{recipe.data.column("text"): p["text"], recipe.data.column("text_pair"): p["text_pair"]} for p in pairs]
    )
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    fast = hftk.pipeline("text-classification", model=str(out), device="cpu")
    assert fast.tokenizer.is_fast and [r["label"] for r in fast(pairs)] == [e["label"] for e in expected]
