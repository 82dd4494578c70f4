"""Recipe -> data -> features -> Trainer -> model directory that `transformers.pipeline` loads as is.

The whole training flow, top to bottom, for every task: each task adapter only supplies the pieces that
differ (features, model class, collator, metrics).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftk import lora
from hftk.data import Records, read_hub_split
from hftk.errors import HftkError
from hftk.files import last_complete_checkpoint, remove_incomplete_checkpoints, replace_model
from hftk.models import DevicePolicy, check_model_files, check_weights, device_policy, load_tokenizer, resolve_model
from hftk.recipe import Recipe, dump_recipe, load_recipe
from hftk.tasks import Task, get_task
from hftk.tasks.base import Features

logger = logging.getLogger("hftk")

SPLITS = ("train", "validation", "test")
CHECKPOINTS = "checkpoints"  # inside output_dir; the final model sits at output_dir's top level
STAGING = ".staging"  # inside output_dir: the final model is written here, then moved into place
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
    hub_id = resolve_model(recipe.model) == recipe.model and not Path(recipe.model).exists()  # missing dir: error
    try:
        tokenizer = load_tokenizer(recipe.model, trust_remote_code=recipe.trust_remote_code)
    except HftkError:
        if not (tokenizer_optional and hub_id):
            raise
        tokenizer = None
    check_model_files(recipe.model, tokenizer)  # weights present, vocabulary fits: before any data is read
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
    records = task.derive_splits(records)
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
    if resume and overwrite:
        raise HftkError("--resume continues the run in the output directory, --overwrite replaces it; pick one")
    recipe = load_recipe(recipe, overrides)
    if output_dir is not None:
        recipe = recipe.model_copy(update={"output_dir": str(output_dir)})
    out = Path(recipe.output_dir)
    # Only reads: every process of a distributed run comes to the same answer, because none writes to `out`
    # before all have passed the barrier below.
    _check_output_dir(out, resume=resume, overwrite=overwrite)

    if not get_task(recipe.task).trainable:
        raise HftkError(f"task: {recipe.task} is for inference only; use hftk predict --task {recipe.task}")
    prepared = prepare(recipe)
    task, splits = prepared.task, prepared.splits
    features = {name: _features(task, recs, by_length=name != "train") for name, recs in splits.items()}
    policy = device_policy(recipe.precision)

    from transformers import EarlyStoppingCallback, set_seed

    set_seed(recipe.seed)  # before the head is initialised, so a seed gives the same model
    model_path = resolve_model(recipe.model)
    check_weights(model_path)
    if recipe.trust_remote_code:
        logger.warning("trust_remote_code: true runs Python code shipped with %s", recipe.model)
    model = task.auto_model().from_pretrained(
        model_path,
        trust_remote_code=recipe.trust_remote_code,
        use_safetensors=True,  # pickled weights can run code when loaded
        ignore_mismatched_sizes=True,  # a fine-tuned checkpoint's head may have another label count
        **task.model_kwargs(),
    )
    _check_vocab(model, task.tokenizer, recipe.model)
    if recipe.peft is not None:
        model = lora.wrap(model, recipe.peft, recipe.task)

    has_eval = "validation" in features
    extra: dict[str, Any] = {"output_dir": str(out / CHECKPOINTS)}
    if has_eval:
        extra |= {"metric_for_best_model": task.main_metric, "greater_is_better": task.greater_is_better}
    else:
        extra |= {"eval_strategy": "no", "load_best_model_at_end": False}
    explicit = {k for k in ("bf16", "fp16", "use_cpu") if k in recipe.training}
    flags = {k: v for k, v in policy.training_flags().items() if k not in explicit}
    args = task.training_arguments(recipe.training_args(**flags, **extra))
    main = args.process_index == 0  # sets up the process group under torchrun/accelerate
    _barrier(args)  # every process has checked the output directory; from here on rank 0 may write
    if main:
        if overwrite:  # old checkpoints would be mistaken for this run's; the old model stays until replaced
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        if resume:
            remove_incomplete_checkpoints(out / CHECKPOINTS)
    _barrier(args)  # no process reads checkpoints while rank 0 deletes some
    checkpoint = None
    if resume:
        last = last_complete_checkpoint(out / CHECKPOINTS)
        checkpoint = str(last) if last is not None else None
        if checkpoint is None and main:
            logger.warning("--resume: no complete checkpoint in %s yet; training from the start", out / CHECKPOINTS)

    start = _start_step_callback()
    callbacks: list[Any] = [start]
    if recipe.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(recipe.early_stopping_patience))

    collator = task.collator(8 if policy.device == "cuda" else None)
    if not hasattr(model, "accepts_loss_kwargs"):  # a model class that declares it knows best
        model.accepts_loss_kwargs = _loss_counts_items(model, collator, features["train"][0])
    trainer = _in_order(task.trainer_class())(
        model=model,
        args=args,
        train_dataset=features["train"][0],
        eval_dataset=features["validation"][0] if has_eval else None,
        processing_class=task.tokenizer,
        data_collator=collator,
        compute_metrics=task.metric_fn(splits["validation"], features["validation"][1]) if has_eval else None,
        callbacks=callbacks,
    )
    if main:
        _log_start(recipe, policy, splits)
    train_out = trainer.train(resume_from_checkpoint=checkpoint)

    steps = {"global_step": trainer.state.global_step, "resumed_from_step": start.step}
    metrics: dict[str, Any] = {"train": {**train_out.metrics, **steps}}
    if recipe.peft is not None:
        metrics["train"] |= lora.trainable_share(trainer.model)
    if has_eval and args.eval_on_start:  # the baseline: the model as loaded, before any step
        metrics["eval_start"] = next((h for h in trainer.state.log_history if "eval_loss" in h), None)
    if has_eval:
        metrics["eval"] = trainer.evaluate()
    if "test" in features:
        trainer.compute_metrics = task.metric_fn(splits["test"], features["test"][1])
        metrics["test"] = trainer.evaluate(features["test"][0], metric_key_prefix="test")
    metrics["device"] = {"device": policy.device, "precision": policy.precision, "world_size": args.world_size}
    if args.world_size > 1:  # DDP (MULTI_GPU/MULTI_CPU), FSDP or DEEPSPEED, as the launcher configured it
        metrics["device"]["distributed"] = str(trainer.accelerator.distributed_type.value)
    _write_output(trainer, recipe, task, metrics, out)
    return TrainResult(out, metrics, trainer.state.global_step, start.step)


# ------------------------------------------------------------------------------------------------ steps


def _start_step_callback():
    from transformers import TrainerCallback

    class StartStep(TrainerCallback):
        """Remembers the step this process started at: 0, or the checkpoint's step when resumed."""

        step: int = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.step = state.global_step  # Trainer has loaded the checkpoint's state by now

    return StartStep()


def _in_order(base: type) -> type:
    class HftkTrainer(base):
        """Evaluates in dataset order, which the task's metrics rely on to line outputs up with features;
        draws each epoch's training order from the seed and the epoch alone, so a resumed run sees the same
        batches as an uninterrupted one; saves no pickles.

        With `group_by_length`, Trainer would shuffle evaluation batches by length too; hftk's evaluation
        splits are sorted by length already.
        """

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            from transformers.trainer_pt_utils import LengthGroupedSampler

            if type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                return _epoch_seeded(sampler, seed)
            return sampler

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            super()._save(output_dir, state_dict)
            # training_args.bin is a pickle (loading it can run code); the recipe says the same in YAML.
            Path(output_dir or self.args.output_dir, "training_args.bin").unlink(missing_ok=True)

    return HftkTrainer


def _epoch_seeded(sampler: Any, seed: int) -> Any:
    """Trainer's length-grouped sampler shuffles with the global RNG as it stands when an epoch starts, which
    depends on everything drawn before (dropout masks included): a run resumed mid-way through epoch 2 would
    see other batches than the run it continues. Here each epoch's order comes from (seed, epoch), as
    accelerate does for plain random sampling, and every process of a distributed run agrees on it.

    The order within each mega-batch stays Trainer's (longest batch to shortest). Shuffling the batches instead
    was measured and dropped: +0.5 points of SST-2 accuracy but -9 points of STS-B Pearson on short runs
    (bench/RESULTS.md).
    """
    import torch

    class EpochSeededLengthGroupedSampler(type(sampler)):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:  # called by accelerate's DataLoaderShard before each epoch
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(seed + self.epoch)
            return super().__iter__()

    return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths)


def _loss_counts_items(model: Any, collator: Any, dataset: Any) -> bool:
    """Whether the model's loss is divided by the `num_items_in_batch` Trainer passes to forward.

    Trainer (transformers 5) assumes so for any forward that takes `**kwargs`, then multiplies the loss by
    the number of processes and skips dividing it by the gradient-accumulation steps. Most heads
    (sequence and token classification, QA, BERT's masked LM) take a plain mean and ignore the count: under
    DDP their loss, gradients and reported losses came out multiplied by the number of processes. Causal LM
    heads do use it. Two forward passes on the same two training rows tell which kind this model is.
    """
    import inspect

    import torch

    names = set(inspect.signature(model.forward).parameters) | {"labels"}
    rows = [{k: v for k, v in dataset[i].items() if k in names} for i in range(min(2, len(dataset)))]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the seeded RNG streams as they were
            batch = collator(rows)
            if "labels" not in batch:
                return False
            model.eval()
            one = model(**batch, num_items_in_batch=torch.tensor(1)).loss
            two = model(**batch, num_items_in_batch=torch.tensor(2)).loss
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return False  # a forward that rejects the count cannot use it
    finally:
        model.train(was_training)
    return bool(torch.isfinite(one) and not torch.allclose(one, two))


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
    """Refuse a non-empty output directory unless told to resume or overwrite. Reads only: `train` deletes
    old checkpoints for --overwrite later, on rank 0, once every process has checked."""
    if out.exists() and not out.is_dir():
        raise HftkError(f"{out}: exists and is not a directory; choose another output_dir or --output")
    if not out.exists() or not any(out.iterdir()) or resume or overwrite:
        return
    raise HftkError(
        f"{out}: output directory is not empty; pass --resume to continue that run, "
        "--overwrite to replace it, or --output NEW_DIR"
    )


def _barrier(args: Any) -> None:
    """Every process of a distributed run waits here for the others; nothing happens in a single process."""
    if args.world_size > 1:
        args.distributed_state.wait_for_everyone()


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
    """Write the final model and run files into a staging folder, then move them into place.

    Called on every process: with FSDP or DeepSpeed, gathering the full weights to save is collective. Only
    rank 0 writes. A crash before the moves leaves the previous contents untouched, and `replace_model` never
    leaves old and new files mixed in a folder that loads.
    """
    from hftk.report import model_card, plot_curve

    main = trainer.is_world_process_zero()
    staging = out / STAGING
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()
    if recipe.peft is None:
        trainer.save_model(str(staging))  # safetensors weights, config with id2label, tokenizer files
    elif main:  # the adapter in adapter/, and the merged model (or only its config) at the top
        lora.save(trainer.model, staging, merge=recipe.peft.merge)
        task.tokenizer.save_pretrained(str(staging))
    if main:
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
        (staging / "README.md").write_text(model_card(recipe, task, metrics), encoding="utf-8")
        plot_curve(trainer.state.log_history, task.main_metric, staging / "training_curve.png")
        replace_model(staging, out)
    trainer.accelerator.wait_for_everyone()  # no process returns before the model is in place
