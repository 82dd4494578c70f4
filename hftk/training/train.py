"""Recipe -> data -> features -> Trainer -> model directory that `transformers.pipeline` loads as is.

`train()` is the conductor: each step is a named function below, in the order it runs, and each task adapter
supplies only what differs (features, model class, collator, metrics). A distributed run (torchrun, accelerate)
runs this same code on every process; the comments say where processes wait for each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftk.config.recipe import Recipe
from hftk.data.records import Features, Split
from hftk.errors import HftkError
from hftk.files import CHECKPOINTS, LOCK, TRACKING, last_complete_checkpoint, locked, remove_incomplete_checkpoints
from hftk.models import lora
from hftk.models.loading import DevicePolicy, check_weights, is_main_process, resolve_model
from hftk.report import Report
from hftk.tasks import get_task, load_recipe
from hftk.training.output import check_output_dir, remove_whole, write_output
from hftk.training.prepare import Prepared, prepare, training_arguments
from hftk.training.steps import silent_settings

logger = logging.getLogger("hftk")


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
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fine-tune the recipe's model and write a pipeline-ready output directory.

    Args:
        recipe: a Recipe, a YAML path or a dict.
        overrides: dotted keys to change before validation, e.g. {"training.learning_rate": 3e-5}.
        output_dir: where the model goes (default: the recipe's output_dir).
        resume: continue from the last checkpoint in output_dir.
        overwrite: replace an existing run in output_dir.
        callbacks: transformers TrainerCallbacks added to the run (`hftk tune` reports evaluations through one).
    """
    if resume and overwrite:
        raise HftkError("--resume continues the run in the output directory, --overwrite replaces it; pick one")
    recipe = load_trainable(recipe, overrides, output_dir)
    out = Path(recipe.output_dir)
    check_output_dir(out, resume=resume, overwrite=overwrite)  # before the lock creates the folder
    # One run per output folder: a second one stops here, naming the first (its process and host).
    lock = locked(out / LOCK, "hftk train") if is_main_process() else contextlib.nullcontext()
    with lock:
        check_output_dir(out, resume=resume, overwrite=overwrite)  # again: what a run before the lock wrote
        return _run(recipe, out, resume=resume, overwrite=overwrite, callbacks=callbacks or [])


def _run(recipe: Recipe, out: Path, *, resume: bool, overwrite: bool, callbacks: list[Any]) -> TrainResult:
    """`train` once the output folder is this run's."""
    from hftk.training.tracking import tracked
    from hftk.training.trainer import build_trainer  # imports transformers' Trainer (seconds): only when training

    prepared = prepare(recipe)
    policy = prepared.task.device_policy()
    # Building the arguments sets up the process group under torchrun/accelerate.
    args = training_arguments(prepared.task, policy, out, has_eval=prepared.has_eval)
    checkpoint = _resume_point(args, out, resume=resume, overwrite=overwrite)
    state = _checkpoint_state(checkpoint) if checkpoint is not None else None
    last = state is not None and _is_last_step(state, args)
    if checkpoint is not None:
        _same_run(checkpoint, prepared.task)  # before any tokenising or weights
    if last and (done := _already_complete(state, out, args)) is not None:
        return done
    features = _features(prepared, args)
    if args.process_index == 0:
        for line in silent_settings(args, _length(features["train"][0])):
            logger.warning("hftk: warning: %s", line)
    model = load_model(prepared)
    trainer, start = build_trainer(
        prepared.task,
        model,
        args,
        {name: dataset for name, (dataset, _) in features.items() if name != "test"},
        _metric_fn(prepared, features, "validation"),
        early_stopping_patience=recipe.early_stopping_patience,
        pad_to_multiple_of=8 if policy.device == "cuda" else None,
    )
    for callback in callbacks:
        trainer.add_callback(callback)
    if last:  # killed while saving the final model: save it, train no step past the end
        return _finish_save(trainer, prepared, features, checkpoint, state, policy, out)
    if args.process_index == 0:
        _log_start(recipe, policy, prepared.splits)
    with tracked(trainer, recipe, {k: len(v) for k, v in prepared.splits.items()}, out) as tracking:
        train_out = trainer.train(resume_from_checkpoint=checkpoint)
        metrics, report = _final_metrics(trainer, prepared, features, train_out.metrics, start.step, policy)
        tracking.summary(metrics)
    write_output(trainer, recipe, prepared.task, metrics, out, report)
    return TrainResult(out, metrics, trainer.state.global_step, start.step)


# ------------------------------------------------------------------------------------------------ steps


def load_trainable(
    source: Recipe | str | Path | dict[str, Any],
    overrides: dict[str, Any] | None,
    output_dir: str | Path | None,
    *,
    otherwise: str = "",
) -> Recipe:
    """The validated recipe of a task that trains; `otherwise` ends the message for one that does not."""
    recipe = load_recipe(source, overrides)
    if output_dir is not None:
        recipe = recipe.model_copy(update={"output_dir": str(output_dir)})
    if not get_task(recipe.task).trainable:
        otherwise = otherwise or f"use hftk predict --task {recipe.task}"
        raise HftkError(f"task: {recipe.task} is for inference only; {otherwise}")
    return recipe


def _features(prepared: Prepared, args: Any) -> dict[str, tuple[Any, Features | None]]:
    """Each split's features. Under torchrun/accelerate the main process of each node builds them first (and fills
    the cache, for tasks that keep one); the others then load its files instead of tokenising again."""
    with args.main_process_first(desc="hftk: features"):
        return {
            name: prepared.task.training_data(records, evaluation=name != "train")
            for name, records in prepared.splits.items()
        }


def _length(dataset: Any) -> int | None:
    """The training sequences (a long row in windows counts each), as Trainer's steps count them; None: a stream."""
    try:
        return len(dataset)
    except TypeError:
        return None


def load_model(prepared: Prepared) -> Any:
    """The pretrained weights with the task's head (seeded, so a seed gives the same head), peft attached."""
    from transformers import set_seed

    recipe, task = prepared.recipe, prepared.task
    set_seed(recipe.seed)
    path = resolve_model(recipe.model)
    check_weights(path)
    if recipe.trust_remote_code:
        logger.warning("trust_remote_code: true runs Python code shipped with %s", recipe.model)
    with _no_load_report():
        model, info = task.auto_model().from_pretrained(
            path,
            trust_remote_code=recipe.trust_remote_code,
            use_safetensors=True,  # pickled weights can run code when loaded
            ignore_mismatched_sizes=True,  # a fine-tuned checkpoint's head may have another label count
            output_loading_info=True,
            **task.model_kwargs(),
        )
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        _say_what_loaded(recipe.model, info)
    task.configure(model)
    size = model.get_input_embeddings().weight.shape[0]
    if len(task.tokenizer) > size:
        raise HftkError(
            f"{recipe.model}: the tokenizer has {len(task.tokenizer)} tokens but the model's embeddings only {size}; "
            "use the tokenizer saved with this model"
        )
    if recipe.peft is not None:
        model = lora.wrap(model, recipe.peft, task.peft_task_type)
    return model


class _LoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def _no_load_report() -> Any:
    """transformers prints a table of every weight it did not load; for a new task head that is expected, and
    `_say_what_loaded` says it in one line."""
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.utils.loading_report")]
    quiet = _LoadReport()
    for log in loggers:
        log.addFilter(quiet)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(quiet)


def _say_what_loaded(model: str, info: dict[str, Any]) -> None:
    new, resized = info.get("missing_keys") or [], info.get("mismatched_keys") or []
    unused = info.get("unexpected_keys") or []
    parts = []
    if new:
        parts.append(f"new head, trained from scratch: {', '.join(sorted(new)[:4])}" + (" ..." if len(new) > 4 else ""))
    if resized:
        parts.append(f"{len(resized)} tensor(s) of another shape replaced (e.g. another label count)")
    if unused:
        parts.append(f"{len(unused)} checkpoint tensor(s) not used (e.g. its pretraining head)")
    if parts:
        logger.warning("hftk: %s loaded; %s", model, "; ".join(parts))


def _resume_point(args: Any, out: Path, *, resume: bool, overwrite: bool) -> str | None:
    """Clear what this run replaces (rank 0, others waiting) and return the checkpoint to resume from, if any."""
    main = args.process_index == 0
    _barrier(args)  # every process has checked the output directory; from here on rank 0 may write
    if main:
        if overwrite:  # old checkpoints (and tracker logs) would be mistaken for this run's; the old model stays
            remove_whole([out / CHECKPOINTS, out / TRACKING])  # all or nothing; a link is removed, not followed
        if resume:
            remove_incomplete_checkpoints(out / CHECKPOINTS)
    _barrier(args)  # no process reads checkpoints while rank 0 deletes some
    if not resume:
        return None
    last = last_complete_checkpoint(out / CHECKPOINTS)
    if last is None and main:
        logger.warning("--resume: no complete checkpoint in %s yet; training from the start", out / CHECKPOINTS)
    return str(last) if last is not None else None


def _same_run(checkpoint: str, task: Any) -> None:
    """--resume with a recipe whose task or labels differ from the run's would load a head of another shape (or
    silently train a new one): say what differs."""
    from transformers import AutoConfig

    if not (Path(checkpoint) / "config.json").is_file():  # a peft adapter checkpoint: its base config is elsewhere
        return
    config = AutoConfig.from_pretrained(checkpoint)
    problem = task.head_problem(config)
    old = [config.id2label[i] for i in range(config.num_labels)] if config.id2label else None
    new = task.model_kwargs().get("id2label")
    if problem is None and new is not None and old != list(new.values()):
        problem = f"labels {old}, the recipe now {list(new.values())}"
    if problem is not None:
        raise HftkError(
            f"{checkpoint}: the run being resumed has {problem}; resume with the run's own recipe, or start anew "
            "with --overwrite"
        )


def _checkpoint_state(checkpoint: str) -> Any:
    """The checkpoint's TrainerState (its trainer_state.json, which a complete checkpoint always has)."""
    from transformers import TrainerState

    return TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def _is_last_step(state: Any, args: Any) -> bool:
    """Whether the checkpoint is the run's final step: Trainer resumed from it would train one step past the end."""
    if args.max_steps > 0:
        return state.global_step >= args.max_steps
    return (state.epoch or 0) >= args.num_train_epochs - 1e-6  # a raised num_train_epochs trains on


def _already_complete(state: Any, out: Path, args: Any) -> TrainResult | None:
    """--resume of a finished run (its model saved after the last step): say so, change nothing."""
    step = state.global_step
    saved = _saved_metrics(out)
    if saved is None or saved.get("train", {}).get("global_step") != step:
        return None
    if args.process_index == 0:
        logger.warning(
            "hftk: %s is already complete (step %d of %d); nothing to resume. Raise training.max_steps (or "
            "num_train_epochs) to train on, or pass --overwrite to train again",
            out,
            step,
            step,
        )
    return TrainResult(out, saved, step, step)


def _finish_save(
    trainer: Any,
    prepared: Prepared,
    features: dict[str, tuple[Any, Features | None]],
    checkpoint: str,
    state: Any,
    policy: DevicePolicy,
    out: Path,
) -> TrainResult:
    """What a kill during the final save left undone (evaluate, write the model), from the last checkpoint."""
    if trainer.args.process_index == 0:
        logger.warning(
            "hftk: training ended at step %d; finishing the interrupted save from %s", state.global_step, checkpoint
        )
    trainer.state = state
    trainer._load_from_checkpoint(checkpoint)  # Trainer's own loader: full weights, sharded, or a peft adapter
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        trainer._load_best_model()
    metrics, report = _final_metrics(trainer, prepared, features, {}, state.global_step, policy)
    write_output(trainer, prepared.recipe, prepared.task, metrics, out, report)
    return TrainResult(out, metrics, state.global_step, state.global_step)


def _saved_metrics(out: Path) -> dict[str, Any] | None:
    """metrics.json of the model in `out`, when there is a whole one (weights in place)."""
    path = out / "metrics.json"
    if not path.is_file() or not any(out.glob("*.safetensors")):
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _metric_fn(
    prepared: Prepared,
    features: dict[str, tuple[Any, Features | None]],
    split: str,
    *,
    tune: bool = False,
    keep: list[Any] | None = None,
) -> Any:
    if split not in features:
        return None
    return prepared.task.metric_fn(prepared.splits[split], features[split][1], tune=tune, keep=keep)


def _final_metrics(
    trainer: Any,
    prepared: Prepared,
    features: dict[str, tuple[Any, Features | None]],
    train_metrics: dict[str, Any],
    start_step: int,
    policy: DevicePolicy,
) -> tuple[dict[str, Any], Report | None]:
    """metrics.json: training, the baseline before training (when evaluated then), validation, test, device; and
    the validation's evaluation report (on the main process, for tasks that score outputs)."""
    args = trainer.args
    steps = {"global_step": trainer.state.global_step, "resumed_from_step": start_step}
    best = trainer.state.best_model_checkpoint
    if args.load_best_model_at_end and best:
        steps["best_step"] = int(best.rsplit("-", 1)[-1])
    metrics: dict[str, Any] = {"train": {**train_metrics, **steps}}
    report = None
    metrics["data"] = {name: len(records) for name, records in prepared.splits.items()}
    if (held := prepared.task.held_out) is not None:  # data.validation_fraction: what was held out, and how
        metrics["held_out"] = held.as_dict()
    if prepared.recipe.peft is not None:
        metrics["train"] |= lora.trainable_share(trainer.model)
    if prepared.has_eval and args.eval_on_start:  # the baseline: the model as loaded, before any step
        metrics["eval_start"] = next((h for h in trainer.state.log_history if "eval_loss" in h), None)
    if prepared.has_eval:
        # What chose the best checkpoint, by name: `hftk runs` reads it back (ROUGE's name depends on the data).
        metrics["main_metric"] = f"eval_{prepared.task.main_metric}"
        if "best_step" in steps and args.process_index == 0:
            logger.warning(
                "hftk: the model is the best checkpoint, step %d (%s %.4g); the evaluation below is of it",
                steps["best_step"],
                args.metric_for_best_model,
                trainer.state.best_metric,
            )
        # The final validation also tunes what the task tunes on it (threshold: tuned), then scores with that.
        outputs: list[Any] = []
        trainer.compute_metrics = _metric_fn(prepared, features, "validation", tune=True, keep=outputs)
        metrics["eval"] = trainer.evaluate()
        if args.process_index == 0:
            split, (_, validation) = prepared.splits["validation"], features["validation"]
            generated, sections = prepared.task.evaluate_generations(trainer.model, split)
            metrics["eval"] |= {f"eval_{k}": v for k, v in generated.items()}
            if outputs:
                report = prepared.task.evaluation_report(
                    split.whole(), validation, outputs, metrics["eval"], prepared.recipe.output_dir
                )
            if sections:  # a loss-only task's report holds these alone
                name, source = prepared.task.name, split.source
                report = report or Report(name, prepared.recipe.output_dir, source, len(split), metrics["eval"], [])
                report.sections += sections
    if "test" in features:
        trainer.compute_metrics = _metric_fn(prepared, features, "test")
        metrics["test"] = trainer.evaluate(features["test"][0], metric_key_prefix="test")
    metrics |= prepared.task.learnt()  # class weights, tuned thresholds
    metrics["device"] = {"device": policy.device, "precision": policy.precision, "world_size": args.world_size}
    if policy.why:
        metrics["device"]["precision_reason"] = policy.why
    if args.world_size > 1:  # DDP (MULTI_GPU/MULTI_CPU), FSDP or DEEPSPEED, as the launcher configured it
        metrics["device"]["distributed"] = str(trainer.accelerator.distributed_type.value)
    return metrics, report


def _barrier(args: Any) -> None:
    """Every process of a distributed run waits here for the others; nothing happens in a single process."""
    if args.world_size > 1:
        args.distributed_state.wait_for_everyone()


def _log_start(recipe: Recipe, policy: DevicePolicy, splits: dict[str, Split]) -> None:
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    logger.warning("hftk: %s on %s, %s -> %s", recipe.task, policy.describe(), sizes, recipe.output_dir)
