"""End to end on real SST-2 rows and real MiniLM weights: train, output directory, pipeline(), resume."""

import json

import pytest

from hftk import HftkError, Predictor, train
from hftk.data import read_records

from .conftest import DATA, MINILM, head, sst2_recipe


def test_trained_model_learns_and_its_directory_is_complete(sst2_model):
    files = {p.name for p in sst2_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert {"metrics.json", "recipe.yaml", "README.md", "training_curve.png"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)  # safetensors, no pickles
    metrics = json.loads((sst2_model / "metrics.json").read_text())
    # 1,200 real training rows, one epoch: clearly above the 0.5 of chance on 300 dev rows.
    assert metrics["eval"]["eval_accuracy"] > 0.7
    assert metrics["device"] == {"device": "cpu", "precision": "fp32", "world_size": 1}
    card = (sst2_model / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "| eval | accuracy |" in card
    config = json.loads((sst2_model / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_output_loads_in_transformers_pipeline_and_agrees_with_predictor(sst2_model):
    from transformers import pipeline

    texts = [r["sentence"] for r in read_records(DATA / "en/sst2/dev.tsv").rows[300:400]]
    pipe = pipeline("text-classification", model=str(sst2_model), device="cpu")
    expected = pipe(texts, batch_size=16)
    got = Predictor(sst2_model).predict(texts)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-4)


def test_refuses_non_empty_output_dir(sst2_model, sst2_small):
    before = {p.name: p.stat().st_mtime_ns for p in sst2_model.iterdir()}
    with pytest.raises(HftkError, match=r"output directory is not empty; pass --resume .* --overwrite"):
        train(sst2_recipe(sst2_small, sst2_model))
    assert {p.name: p.stat().st_mtime_ns for p in sst2_model.iterdir()} == before


def test_resume_continues_from_last_checkpoint(tmp_path):
    rows = {"train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 320)}
    rows["validation"] = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 64)
    out = tmp_path / "run"
    recipe = sst2_recipe(
        rows,
        out,
        training={
            "max_steps": 6,
            "save_strategy": "steps",
            "save_steps": 3,
            "eval_strategy": "no",
            "load_best_model_at_end": False,
            "per_device_train_batch_size": 16,
        },
    )
    assert train(recipe).global_step == 6
    resumed = train(recipe, overrides={"training.max_steps": 9}, resume=True)
    assert (resumed.start_step, resumed.global_step) == (6, 9)


def test_pair_regression_and_multi_label_train_on_real_data(tmp_path):
    """Each problem type runs end to end and reports its own metrics."""
    stsb = {
        "train": head(DATA / "en/stsb/train.tsv", tmp_path / "stsb_train.tsv", 600),
        "validation": head(DATA / "en/stsb/dev.tsv", tmp_path / "stsb_dev.tsv", 200),
    }
    result = train(
        {
            "task": "text-classification",
            "model": MINILM,
            "problem_type": "regression",
            "data": {
                **{k: str(v) for k, v in stsb.items()},
                "columns": {"text": "sentence1", "text_pair": "sentence2", "label": "score"},
            },
            "training": {"num_train_epochs": 2, "learning_rate": 1e-4, "per_device_train_batch_size": 16},
            "output_dir": str(tmp_path / "stsb"),
        }
    )
    # MiniLM was trained for sentence similarity: a few hundred pairs give a strong correlation.
    assert result.metrics["eval"]["eval_pearson"] > 0.6

    names = (DATA / "en/goemotions/labels.txt").read_text().split()
    go = {
        "train": head(DATA / "en/goemotions/train.tsv", tmp_path / "go_train.tsv", 800, header=False),
        "validation": head(DATA / "en/goemotions/dev.tsv", tmp_path / "go_dev.tsv", 200, header=False),
    }
    result = train(
        {
            "task": "text-classification",
            "model": MINILM,
            "problem_type": "multi_label",
            "labels": dict(enumerate(names)),
            "threshold": 0.3,
            "data": {
                **{k: str(v) for k, v in go.items()},
                "column_names": ["text", "label", "id"],
                "label_delimiter": ",",
            },
            "training": {"num_train_epochs": 1, "learning_rate": 1e-4},
            "output_dir": str(tmp_path / "go"),
        }
    )
    assert {"eval_f1_micro", "eval_f1_macro", "eval_exact_match"} <= set(result.metrics["eval"])
    preds = Predictor(tmp_path / "go").predict(["Thank you so much, this is wonderful!"])
    assert set(preds[0]) == {"labels", "scores"} and len(preds[0]["scores"]) == 28
