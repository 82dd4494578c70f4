"""`hftk check`: splits, labels and token lengths, warnings, the TrainingArguments train will use, and the same
refusals as train, without loading weights."""

import json

import pytest

from hftk import HftkError, check, train
from hftk.training.check import format_report

from ..helpers import DATA, MINILM, ROOT, hftk


def test_check_prints_splits_labels_and_lengths():
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["train"]["rows"] == 40000 and report["validation"]["rows"] == 872
    assert report["validation"]["labels"] == {"negative": 428, "positive": 444}
    assert report["train"]["tokens"]["max"] >= report["train"]["tokens"]["p99"] > 0


def test_check_warns_about_truncation():
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", "max_length=16", "--set", "long_inputs=truncate")
    assert proc.returncode == 0, proc.stderr
    assert "are longer than max_length 16 tokens and will be truncated" in proc.stdout
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", "max_length=16")  # the default: head and tail
    assert proc.returncode == 0 and "will be truncated" not in proc.stdout, proc.stdout
    assert "their first 3 and last tokens are read (head_tail)" in proc.stdout


def test_check_counts_inputs_longer_than_the_model_without_transformers_alarm(tmp_path):
    """Counting whole inputs is on purpose (training windows or cuts them): transformers' "Token indices sequence
    length is longer than the specified maximum ... indexing errors" is not passed on."""
    (tmp_path / "long.csv").write_text(
        "text,label\n" + "".join(f"{'a gripping film ' * 300},{i % 2}\n" for i in range(4)), encoding="utf-8"
    )
    (tmp_path / "r.yaml").write_text(f"task: text-classification\nmodel: {MINILM}\ndata:\n  train: long.csv\n")
    proc = hftk("check", str(tmp_path / "r.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "tokens: median 902" in proc.stdout and "longer than the window: 4 of 4 inputs" in proc.stdout
    assert "Token indices" not in proc.stderr and "indexing errors" not in proc.stderr, proc.stderr


def test_check_works_offline_for_a_hub_model():
    # recipes/jsick-ja.yaml names cl-tohoku/bert-base-japanese-v3, not cached here: data is still validated.
    proc = hftk("check", "recipes/jsick-ja.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "train: 5000 rows" in proc.stdout and "contradiction 823, entailment 1091, neutral 3086" in proc.stdout
    assert "tokenizer not available here" in proc.stdout


# ------------------------------------------------------------------------------------ the run train will start


def training_line(report: dict) -> str:
    (line,) = [line for line in format_report(report).splitlines() if line.startswith("training:")]
    return line


def test_check_shows_the_training_arguments_with_task_defaults():
    # masked-lm with held-out text: the task evaluates before training (its baseline perplexity).
    report = check(ROOT / "recipes/mlm-domain-en.yaml")
    training = report["training"]
    assert training["eval_on_start"] is True and training["eval_strategy"] == "epoch"
    assert (training["num_train_epochs"], training["learning_rate"]) == (1, 1e-4)  # the recipe's
    assert training["per_device_train_batch_size"] == 32
    assert "validation" in report  # the held-out share, split off as train will
    line = training_line(report)
    assert line == "training: 1 epoch, batch 32 per device, learning rate 0.0001, evaluation epoch and before training"
    # Without validation text nothing is evaluated, before training or after.
    report = check(ROOT / "recipes/mlm-domain-en.yaml", {"data.validation_fraction": None, "training.max_steps": 5})
    assert report["training"]["eval_on_start"] is False and report["training"]["eval_strategy"] == "no"
    assert training_line(report) == "training: 5 steps, batch 32 per device, learning rate 0.0001, evaluation no"


def test_check_shows_that_seq2seq_generates(bart_fixture):
    report = check(ROOT / "recipes/summarize-bart.yaml", {"model": str(bart_fixture)})
    assert report["training"]["predict_with_generate"] is True
    assert report["training"]["num_train_epochs"] == 5 and report["training"]["eval_on_start"] is False
    assert training_line(report).endswith("evaluation epoch, generating")
    assert "tokens" in report["train"]  # the fixture's tokenizer, not the hub's: lengths measured, offline
    assert not any("tokenizer not available" in w for w in report["warnings"]), report["warnings"]


def test_check_refuses_what_train_would_refuse(tmp_path):
    recipe = {
        "task": "text-classification",
        "model": MINILM,
        "data": {
            "train": str(DATA / "en/sst2/dev.tsv"),
            "validation": str(DATA / "en/sst2/dev.tsv"),
            "columns": {"text": "sentence"},
        },
        # Evaluating by steps, saving each epoch, and (hftk's default) loading the best model at the end.
        "training": {"eval_strategy": "steps", "save_strategy": "epoch"},
        "output_dir": str(tmp_path / "run"),
    }
    with pytest.raises(HftkError) as checked:
        check(recipe)
    message = str(checked.value)
    assert "training: --load_best_model_at_end requires the save and eval strategy to match" in message
    with pytest.raises(HftkError) as trained:
        train(recipe)
    assert str(trained.value) == message
    assert not (tmp_path / "run").exists()
    # Loading the best model turned off, both accept it.
    fixed = {**recipe, "training": {**recipe["training"], "load_best_model_at_end": False}}
    assert check(fixed)["training"]["eval_strategy"] == "steps"


def test_check_passes_for_an_inference_only_task():
    report = check(
        {
            "task": "feature-extraction",
            "model": MINILM,
            "data": {"validation": str(DATA / "en/sst2/dev.tsv"), "columns": {"text": "sentence"}},
        }
    )
    assert report["validation"]["rows"] == 872 and not report["warnings"] and "training" not in report
    assert check({"task": "feature-extraction", "model": MINILM, "data": {}})["warnings"] == []
