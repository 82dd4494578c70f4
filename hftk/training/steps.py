"""A run's length as Trainer will count it, and the settings that, within that length, leave a run training or
evaluating (almost) nothing without a word: warm-up over the whole run, evaluation or checkpoints set past its
end, a training split smaller than one batch. `hftk check` and `hftk train` say the same lines."""

from __future__ import annotations

import math
from typing import Any

WARMUP_SHARE = 0.9  # warm-up over this share of the run or more: the learning rate is at its peak for no time


def total_steps(args: Any, rows: int | None) -> int | None:
    """Optimizer steps of a run of `rows` training sequences, as Trainer counts them (set_initial_training_values):
    max_steps, or epochs x updates per epoch, where an epoch is ceil(rows / (batch x processes)) batches and an
    update takes gradient_accumulation_steps of them. None: a stream of unknown length without max_steps."""
    if args.max_steps > 0:
        return int(args.max_steps)
    if rows is None:
        return None
    per_step = args.per_device_train_batch_size * max(args.world_size, 1)
    batches = rows // per_step if args.dataloader_drop_last else math.ceil(rows / per_step)
    updates = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.num_train_epochs * updates)


def silent_settings(args: Any, rows: int | None) -> list[str]:
    """One line for each setting that makes the run of `args` over `rows` training sequences train or evaluate
    (almost) nothing, naming the setting and the fix; [] for a run that works."""
    total = total_steps(args, rows)
    if total is None:
        return []
    epochs = f"{args.num_train_epochs:g} epoch{'s' * (args.num_train_epochs != 1)}"
    run = f"the run's {total} step{'s' * (total != 1)}" + (
        " (training.max_steps)" if args.max_steps > 0 else f" ({epochs})"
    )
    lines = []
    warmup = args.get_warmup_steps(total)
    if warmup >= WARMUP_SHARE * total:
        reach = (
            f"never reaches training.learning_rate {args.learning_rate:g} (the last step's is "
            f"{(total - 1) / warmup:.0%} of it)"
            if warmup >= total
            else f"reaches training.learning_rate {args.learning_rate:g} only in the run's last {total - warmup} steps"
        )
        lines.append(
            f"training.warmup_steps {args.warmup_steps:g} warms up over {warmup} of {run}: the learning rate {reach}; "
            "lower warmup_steps (below 1 it is a share of the run, e.g. 0.1)"
        )
    strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
    if strategy == "steps" and args.eval_steps and args.eval_steps >= 1 and args.eval_steps > total:
        lines.append(
            f"training.eval_steps {args.eval_steps:g} is past the end of {run}: the model is evaluated only once, "
            "after the last step (no curve, no early stopping, the best checkpoint is the last); lower eval_steps, "
            "or set eval_strategy: epoch"
        )
    length = total if strategy == "steps" else args.num_train_epochs if args.max_steps <= 0 else None
    if strategy != "no" and args.eval_delay and length is not None and args.eval_delay > length:
        lines.append(
            f"training.eval_delay {args.eval_delay:g} ({'steps' if strategy == 'steps' else 'epochs'}) is past the "
            f"end of {run}: the model is never evaluated; lower eval_delay"
        )
    saving = str(getattr(args.save_strategy, "value", args.save_strategy))
    if saving == "steps" and args.save_steps >= 1 and args.save_steps > total:
        lines.append(
            f"training.save_steps {args.save_steps:g} is past the end of {run}: no checkpoint before the last step, "
            "so a run stopped early resumes from the start; lower save_steps"
        )
    batch = args.per_device_train_batch_size * max(args.world_size, 1) * args.gradient_accumulation_steps
    if rows is not None and rows < batch:
        settings = "training.per_device_train_batch_size" + (
            " x gradient_accumulation_steps" if args.gradient_accumulation_steps > 1 else ""
        )
        processes = f" x {args.world_size} processes" if args.world_size > 1 else ""
        lines.append(
            f"train: {rows} rows are fewer than one batch of {batch} ({settings}{processes}): every step sees the "
            f"same {rows} rows, {total} step{'s' * (total != 1)} in all; lower per_device_train_batch_size or give "
            "more rows"
        )
    return lines
