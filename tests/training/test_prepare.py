"""hftk.prepare: the one TrainingArguments builder (hftk defaults < task defaults < recipe < what the task and hftk
require) and the data splits read and validated, labels fitted, before any weights load."""

import pytest
from transformers import Seq2SeqTrainingArguments, TrainingArguments

from hftk import HftkError, load_recipe
from hftk.config.training import TRAINING_DEFAULTS
from hftk.models.loading import DevicePolicy
from hftk.tasks import get_task
from hftk.tasks.classification import Classification
from hftk.training.prepare import prepare, training_arguments

from ..helpers import DATA, MINILM, ROOT

CPU = DevicePolicy("cpu", "fp32")
MLM = {"task": "masked-lm", "model": MINILM, "data": {"train": "x.txt", "validation_fraction": 0.1}}
CLASSIFY = {"task": "text-classification", "model": MINILM, "data": {"train": "x.tsv", "validation": "y.tsv"}}


def arguments(recipe: dict, out="out", *, has_eval: bool, policy: DevicePolicy = CPU):
    r = load_recipe(recipe)
    return training_arguments(get_task(r.task)(r, None), policy, out, has_eval=has_eval)


# ------------------------------------------------------------------------------------ training_arguments


def test_hftk_defaults_fill_what_nobody_set(tmp_path):
    args = arguments(CLASSIFY, tmp_path, has_eval=True)
    assert type(args) is TrainingArguments
    for key in ("num_train_epochs", "learning_rate", "per_device_train_batch_size", "weight_decay", "logging_steps"):
        assert getattr(args, key) == TRAINING_DEFAULTS[key], key
    assert args.save_total_limit == TRAINING_DEFAULTS["save_total_limit"] and args.load_best_model_at_end
    assert args.train_sampling_strategy == TRAINING_DEFAULTS["train_sampling_strategy"] == "group_by_length"
    assert args.eval_strategy.value == args.save_strategy.value == "epoch"
    assert args.eval_on_start is False  # no task default for classification: TrainingArguments' own
    # The best checkpoint is picked by the task's main metric; the checkpoints go under OUT/checkpoints.
    assert (args.metric_for_best_model, args.greater_is_better) == ("accuracy", True)
    assert args.output_dir == str(tmp_path / "checkpoints")
    assert args.use_cpu and not args.bf16 and not args.fp16  # the device policy's flags
    assert args.seed == 42 and arguments({**CLASSIFY, "seed": 7}, has_eval=True).seed == 7  # the recipe's seed


def test_task_defaults_beat_hftk_defaults_and_the_recipe_beats_both():
    args = arguments(MLM, has_eval=True)
    assert args.eval_on_start is True and args.train_sampling_strategy == "random"  # masked-lm's preferences
    assert args.num_train_epochs == TRAINING_DEFAULTS["num_train_epochs"]  # hftk's where the task says nothing
    assert arguments(MLM, has_eval=False).eval_on_start is False  # nothing to evaluate before training
    training = {"eval_on_start": False, "train_sampling_strategy": "group_by_length", "num_train_epochs": 2}
    args = arguments({**MLM, "training": training}, has_eval=True)
    assert args.eval_on_start is False and args.train_sampling_strategy == "group_by_length"
    assert args.num_train_epochs == 2
    # A task default meets a recipe value: evaluating every 500 steps (the task's) beside saving each epoch
    # (hftk's) with load_best_model_at_end is what TrainingArguments rejects: a located one-line HftkError. The
    # recipe turning load_best_model_at_end off settles it, and the task's eval_strategy stays.
    r = load_recipe(CLASSIFY)
    with pytest.raises(HftkError, match=r"^recipe: training: --load_best_model_at_end requires the save and eval"):
        training_arguments(EveryStepsClassification(r, None), CPU, "out", has_eval=True)
    r = load_recipe({**CLASSIFY, "training": {"load_best_model_at_end": False}})
    args = training_arguments(EveryStepsClassification(r, None), CPU, "out", has_eval=True)
    assert (args.eval_strategy.value, args.save_strategy.value, args.load_best_model_at_end) == (
        "steps",
        "epoch",
        False,
    )


class EveryStepsClassification(Classification):
    """A task that prefers evaluating by steps (no `name`: the registry never lists it)."""

    def default_arguments(self, has_eval: bool) -> dict:
        return {"eval_strategy": "steps"}


def test_what_the_task_and_hftk_require_beats_the_recipe():
    training = {"remove_unused_columns": True, "metric_for_best_model": "loss", "greater_is_better": True}
    args = arguments({**MLM, "training": training}, has_eval=True)
    assert args.remove_unused_columns is False  # the LM collator needs every column
    assert (args.metric_for_best_model, args.greater_is_better) == ("perplexity", False)
    # No validation split: no evaluation and no best model, whatever the recipe asks.
    training = {"eval_strategy": "steps", "save_strategy": "steps", "load_best_model_at_end": True}
    args = arguments({**CLASSIFY, "training": training}, has_eval=False)
    assert args.eval_strategy.value == "no" and args.load_best_model_at_end is False
    assert args.save_strategy.value == "steps"  # saving is the recipe's still


def test_device_flags_unless_the_recipe_sets_them():
    bf16 = DevicePolicy("cpu", "bf16")
    assert arguments(CLASSIFY, has_eval=True, policy=bf16).bf16 is True
    assert arguments({**CLASSIFY, "training": {"bf16": False}}, has_eval=True, policy=bf16).bf16 is False


def test_seq2seq_gets_seq2seq_arguments_that_generate(tmp_path):
    recipe = {"task": "seq2seq", "model": "facebook/bart-base", "data": {"train": "x.jsonl", "validation": "y.jsonl"}}
    args = arguments(recipe, tmp_path, has_eval=True)
    assert type(args) is Seq2SeqTrainingArguments and args.predict_with_generate is True
    assert args.metric_for_best_model == "rougeL" and args.output_dir == str(tmp_path / "checkpoints")
    args = arguments({**recipe, "task": "seq2seq", "pipeline": "translation"}, has_eval=False)
    assert type(args) is Seq2SeqTrainingArguments and args.predict_with_generate is True
    assert type(arguments({**MLM, "model": "gpt2", "task": "causal-lm"}, has_eval=True)) is TrainingArguments


# ------------------------------------------------------------------------------------ prepare


def sst2(**extra) -> dict:
    data = {"train": str(DATA / "en/sst2/train.tsv"), "validation": str(DATA / "en/sst2/dev.tsv")}
    return {
        "task": "text-classification",
        "model": MINILM,
        "data": {**data, "columns": {"text": "sentence"}},
        **extra,
    }


def test_prepare_reads_the_splits_and_fits_the_labels():
    prepared = prepare(load_recipe(sst2()))
    assert set(prepared.splits) == {"train", "validation"} and prepared.has_eval
    assert (len(prepared.splits["train"]), len(prepared.splits["validation"])) == (40000, 872)
    assert prepared.splits["validation"].rows[0]["sentence"].startswith("it 's a charming and often affecting")
    task = prepared.task
    assert isinstance(task, Classification) and task.tokenizer is not None
    assert task.names == ["0", "1"]  # fitted on train, in natural order
    named = prepare(load_recipe(sst2(labels={0: "negative", 1: "positive"}))).task
    assert named.names == ["negative", "positive"]
    assert named.summary(prepared.splits["validation"]) == {"labels": {"negative": 428, "positive": 444}}


def test_prepare_only_the_splits_asked_for_and_train_is_required():
    only = prepare(load_recipe(sst2()), splits=("validation",))
    assert set(only.splits) == {"validation"} and only.task.names == []  # nothing to fit labels on
    recipe = load_recipe({**sst2(), "data": {"validation": str(DATA / "en/sst2/dev.tsv")}})
    with pytest.raises(HftkError, match=r"recipe: data\.train is required to train"):
        prepare(recipe)


def test_prepare_without_the_hub_tokenizer_only_when_allowed():
    recipe = load_recipe(ROOT / "recipes/jsick-ja.yaml")  # a hub model, not cached here
    prepared = prepare(recipe, tokenizer_optional=True)
    assert prepared.task.tokenizer is None and len(prepared.splits["train"]) == 5000
    assert prepared.task.names == ["entailment", "neutral", "contradiction"]
    with pytest.raises(HftkError):
        prepare(recipe)


def test_without_validation_nothing_is_evaluated_not_even_before_training():
    recipe = {**CLASSIFY, "data": {"train": "x.tsv"}, "training": {"eval_on_start": True}}
    args = arguments(recipe, has_eval=False)
    assert args.eval_strategy.value == "no" and not args.load_best_model_at_end and args.eval_on_start is False
