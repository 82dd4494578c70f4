"""Recipe -> data -> features -> Trainer -> model directory that `transformers.pipeline` loads as is.

The whole training flow, top to bottom, for every task: each task adapter only supplies the pieces that
differ (features, model class, collator, metrics).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftk.data import Records, read_hub_split
from hftk.errors import HftkError
from hftk.models import DevicePolicy, check_weights, device_policy, load_tokenizer, resolve_model
from hftk.recipe import Recipe, dump_recipe, load_recipe
from hftk.tasks import Task, get_task
from hftk.tasks.base import Features

logger = logging.getLogger("hftk")

SPLITS = ("train", "validation", "test")
CHECKPOINTS = "checkpoints"  # inside output_dir; the final model sits at output_dir's top level
RUN_FILES = ("metrics.json", "recipe.yaml", "README.md", "training_curve.png")


@dataclass
class Prepared:
    """Everything known before weights load: used by `train`, `check` and `evaluate`."""

    recipe: Recipe
    task: Task
    splits: dict[str, Records]


def prepare(recipe: Recipe, *, splits: tuple[str, ...] = SPLITS, tokenizer_optional: bool = False) -> Prepared:
    """Read and validate every data split named in the recipe, and fit the task's label vocabulary.

    With `tokenizer_optional`, a hub model whose tokenizer cannot be fetched (offline, not cached) leaves
    `task.tokenizer` None instead of failing: `hftk check` still validates recipe and data.
    """
    try:
        tokenizer = load_tokenizer(recipe.model)
    except HftkError:
        if not tokenizer_optional or Path(recipe.model).exists() or recipe.model.startswith("package:"):
            raise
        tokenizer = None
    task = get_task(recipe.task)(recipe, tokenizer)
    data = recipe.data
    records: dict[str, Records] = {}
    for split in splits:
        source = getattr(data, split)
        if source is None:
            continue
        if data.hub:
            records[split] = read_hub_split(data.hub, data.hub_config, source)
        else:
            records[split] = task.read(source)
    if "train" in splits and "train" not in records:
        raise HftkError("recipe: data.train is required to train; name the training file")
    if "train" in records:
        task.fit(records["train"])
    return Prepared(recipe, task, records)


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict[str, Any]
    global_step: int
    start_step: int  # > 0 when resumed from a checkpoint


def train(
    recipe: Recipe | str | Path | dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Fine-tune the recipe's model and write a pipeline-ready output directory.

    Args:
        recipe: a Recipe, a YAML path or a dict.
        overrides: dotted keys to change before validation, e.g. {"training.learning_rate": 3e-5}.
        output_dir: where the model goes (default: the recipe's output_dir).
        resume: continue from the last checkpoint in output_dir.
        overwrite: replace an existing run in output_dir.
    """
    recipe = load_recipe(recipe, overrides)
    if output_dir is not None:
        recipe = recipe.model_copy(update={"output_dir": str(output_dir)})
    out = Path(recipe.output_dir)
    _check_output_dir(out, resume=resume, overwrite=overwrite)

    if not get_task(recipe.task).trainable:
        raise HftkError(f"task: {recipe.task} is for inference only; use hftk predict --task {recipe.task}")
    prepared = prepare(recipe)
    task, splits = prepared.task, prepared.splits
    features = {name: _features(task, recs, by_length=name != "train") for name, recs in splits.items()}
    policy = device_policy(recipe.precision)

    import transformers
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

    set_seed(recipe.seed)  # before the head is initialised, so a seed gives the same model
    model_path = resolve_model(recipe.model)
    check_weights(model_path)
    if recipe.trust_remote_code:
        logger.warning("trust_remote_code: true runs Python code shipped with %s", recipe.model)
    model = task.auto_model().from_pretrained(
        model_path,
        trust_remote_code=recipe.trust_remote_code,
        ignore_mismatched_sizes=True,  # a fine-tuned checkpoint's head may have another label count
        **task.model_kwargs(),
    )
    _check_vocab(model, task.tokenizer, recipe.model)

    has_eval = "validation" in features
    extra: dict[str, Any] = {"output_dir": str(out / CHECKPOINTS)}
    if has_eval:
        extra |= {"metric_for_best_model": task.main_metric, "greater_is_better": task.greater_is_better}
    else:
        extra |= {"eval_strategy": "no", "load_best_model_at_end": False}
    explicit = {k for k in ("bf16", "fp16", "use_cpu") if k in recipe.training}
    flags = {k: v for k, v in policy.training_flags().items() if k not in explicit}
    args = TrainingArguments(**recipe.training_args(**flags, **extra))

    start = _start_step_callback()
    callbacks: list[Any] = [start]
    if recipe.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(recipe.early_stopping_patience))

    trainer = _in_order(task.trainer_class())(
        model=model,
        args=args,
        train_dataset=features["train"][0],
        eval_dataset=features["validation"][0] if has_eval else None,
        processing_class=task.tokenizer,
        data_collator=task.collator(8 if policy.device == "cuda" else None),
        compute_metrics=task.metric_fn(splits["validation"], features["validation"][1]) if has_eval else None,
        callbacks=callbacks,
    )
    checkpoint = None
    if resume:
        checkpoint = transformers.trainer_utils.get_last_checkpoint(str(out / CHECKPOINTS))
        if checkpoint is None:
            logger.warning("--resume: no checkpoint in %s yet; training from the start", out / CHECKPOINTS)
    _log_start(recipe, policy, splits)
    train_out = trainer.train(resume_from_checkpoint=checkpoint)

    metrics: dict[str, Any] = {"train": dict(train_out.metrics)}
    if has_eval:
        metrics["eval"] = trainer.evaluate()
    if "test" in features:
        trainer.compute_metrics = task.metric_fn(splits["test"], features["test"][1])
        metrics["test"] = trainer.evaluate(features["test"][0], metric_key_prefix="test")
    metrics["device"] = {"device": policy.device, "precision": policy.precision, "world_size": args.world_size}
    if trainer.is_world_process_zero():
        _write_output(trainer, recipe, task, metrics, out)
    return TrainResult(out, metrics, trainer.state.global_step, start.step)


# ------------------------------------------------------------------------------------------------ steps


def _start_step_callback():
    from transformers import TrainerCallback

    class StartStep(TrainerCallback):
        """Remembers the step this process started at: 0, or the checkpoint's step when resumed."""

        step: int | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            if self.step is None:
                self.step = state.global_step

    return StartStep()


def _in_order(base: type) -> type:
    class HftkTrainer(base):
        """Evaluates in dataset order, which the task's metrics rely on to line outputs up with features.

        With `group_by_length`, Trainer would shuffle evaluation batches by length too; hftk's evaluation
        splits are sorted by length already.
        """

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    return HftkTrainer


def _features(task: Task, records: Records, *, by_length: bool) -> tuple[Any, Features]:
    """Tokenised features as a `datasets.Dataset` for Trainer, and as columns for the task's metrics.

    Evaluation splits are sorted by length: metrics do not depend on order, and batches of similar length
    carry almost no padding, so evaluating each epoch costs less.
    """
    from datasets import Dataset

    columns = task.encode(records, with_targets=True)
    if by_length:
        ids = columns["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        columns = {k: [v[i] for i in order] for k, v in columns.items()}
    return Dataset.from_dict(columns), columns


def _check_output_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    if not out.exists() or not any(out.iterdir()) or resume:
        return
    if not overwrite:
        raise HftkError(
            f"{out}: output directory is not empty; pass --resume to continue that run, "
            "--overwrite to replace it, or --output NEW_DIR"
        )
    # --overwrite: old checkpoints would be mistaken for this run's; the old final model is replaced
    # file by file only when the new one is complete.
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)


def _check_vocab(model: Any, tokenizer: Any, ref: str) -> None:
    size = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > size:
        raise HftkError(
            f"{ref}: the tokenizer has {len(tokenizer)} tokens but the model's embeddings only {size}; "
            "use the tokenizer saved with this model"
        )


def _log_start(recipe: Recipe, policy: DevicePolicy, splits: dict[str, Records]) -> None:
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    logger.warning(
        "hftk: %s on %s (%s), %s -> %s", recipe.task, policy.device, policy.precision, sizes, recipe.output_dir
    )


def _write_output(trainer: Any, recipe: Recipe, task: Task, metrics: dict[str, Any], out: Path) -> None:
    """Write the final model and run files into a staging folder, then move each into place.

    A crash before the moves leaves the previous contents untouched; files are renamed, never rewritten.
    """
    from hftk.report import model_card, plot_curve

    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    trainer.save_model(str(staging))  # safetensors weights, config with id2label, tokenizer files
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (staging / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
    (staging / "README.md").write_text(model_card(recipe, task, metrics), encoding="utf-8")
    plot_curve(trainer.state.log_history, task.main_metric, staging / "training_curve.png")
    for path in sorted(staging.iterdir()):
        if path.name == "training_args.bin":  # a pickle; the resolved recipe says the same in YAML
            path.unlink()
            continue
        target = out / path.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(path, target)
    staging.rmdir()
