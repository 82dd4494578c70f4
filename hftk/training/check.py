"""`hftk check`: validate a recipe and its data without loading weights, and show what training will see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hftk.config.recipe import Recipe
from hftk.models.loading import OFFLINE_HINT
from hftk.tasks import load_recipe
from hftk.training.prepare import prepare, training_arguments
from hftk.training.steps import silent_settings


def check(recipe: Recipe | str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate recipe and data; return per-split rows, label counts, token-length percentiles and warnings.

    Raises:
        HftkError: on the first problem in the data, or every problem in the recipe at once.
    """
    recipe = load_recipe(recipe, overrides)
    prepared = prepare(recipe, tokenizer_optional=True)
    task = prepared.task
    policy = task.device_policy()  # a precision this machine cannot train in fails here, not later
    report: dict[str, Any] = {"task": recipe.task, "model": recipe.model, "max_length": task.max_length}
    report["device"] = {"device": policy.device, "precision": policy.precision, "why": policy.why}
    if task.trainable:  # the arguments `hftk train` will build, task defaults included: they must hold together
        args = training_arguments(task, policy, recipe.output_dir, has_eval=prepared.has_eval)
        report["training"] = {k: getattr(args, k) for k in _ARGUMENTS if hasattr(args, k)}
        report["training"]["eval_strategy"] = str(args.eval_strategy.value)
    warnings: list[str] = []
    if task.trainable:
        train = prepared.splits.get("train")  # a stream is not counted: it runs for training.max_steps
        rows = len(train) if train is not None and not recipe.data.streaming else None
        warnings += silent_settings(args, rows)
    if task.tokenizer is None:
        warnings.append(
            f"{recipe.model}: tokenizer not available here (offline and not in the HF cache); "
            f"token lengths not checked: {OFFLINE_HINT}"
        )
    for name, records in prepared.splits.items():
        streamed = name == "train" and recipe.data.streaming  # fit checked it row by row; it is never held
        if (task.trainable or task.has_targets(records)) and not streamed:
            task.check_targets(records)  # training evaluates every split: each needs targets that convert
        info: dict[str, Any] = {"rows": len(records), **task.summary(records)}
        if warning := info.pop("warning", None):  # what the summary found wrong (answers cut by max_length)
            warnings.append(f"{records.source}: {warning}")
        if task.trainable and task.tokenizer is not None and "cache" not in info:
            info["cache"] = task.cache_status(records, evaluation=name != "train")
        lengths = task.lengths(records) if task.tokenizer is not None else None
        if lengths:
            arr = np.asarray(lengths)
            info["tokens"] = {f"p{q}": int(np.percentile(arr, q)) for q in (50, 90, 99)} | {"max": int(arr.max())}
            warning, details = task.check_lengths(arr)
            info |= details
            if warning:
                warnings.append(f"{records.source}: {warning}")
        if name == "validation" and task.held_out is not None:
            info["held out"] = task.held_out.describe()
        report[name] = info
    report["warnings"] = warnings
    return report


_SHOWN = ("rows", "tokens", "labels", "label range")
# TrainingArguments `hftk check` shows: what decides the run's length and evaluation, task defaults included.
_ARGUMENTS = (
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "learning_rate",
    "eval_strategy",
    "eval_on_start",
    "predict_with_generate",
)


def format_report(report: dict[str, Any]) -> str:
    lines = [f"task {report['task']}, model {report['model']}, max_length {report['max_length']}"]
    if device := report.get("device"):
        why = f", {device['why']}" if device.get("why") else ""
        lines[0] += f", trains on {device['device']} ({device['precision']}{why})"
    for split in ("train", "validation", "test"):
        info = report.get(split)
        if not info:
            continue
        lines.append(f"{split}: {info['rows']} rows")
        if "tokens" in info:
            t = info["tokens"]
            lines.append(f"  tokens: median {t['p50']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']}")
        if "labels" in info:
            labels = ", ".join(f"{k} {v}" for k, v in info["labels"].items())
            lines.append(f"  labels: {labels}")
        if "label range" in info:
            lines.append(f"  labels: {info['label range']}")
        lines.extend(f"  {k}: {v}" for k, v in info.items() if k not in _SHOWN)
    if training := report.get("training"):
        length = (
            f"{training['max_steps']} step" + "s" * (training["max_steps"] != 1)
            if training["max_steps"] > 0
            else f"{training['num_train_epochs']:g} epoch" + "s" * (training["num_train_epochs"] != 1)
        )
        lines.append(
            f"training: {length}, batch {training['per_device_train_batch_size']} per device, "
            f"learning rate {training['learning_rate']:g}, evaluation {training['eval_strategy']}"
            + (" and before training" if training.get("eval_on_start") else "")
            + (", generating" if training.get("predict_with_generate") else "")
        )
    lines.extend(f"warning: {w}" for w in report["warnings"])
    lines.append("ok" if not report["warnings"] else f"ok, {len(report['warnings'])} warning(s)")
    return "\n".join(lines)
