"""The `training:` block: hftk's defaults for TrainingArguments, and the check of a recipe's block against
TrainingArguments itself (its fields, their types and ranges, then its own __post_init__), with located errors."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from hftk.errors import did_you_mean

# hftk's own training defaults, in one place. A recipe's `training:` block overrides any of them.
TRAINING_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3,
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "warmup_steps": 0,
    "weight_decay": 0.01,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "logging_steps": 50,  # fewer for short runs (trainer.CurvePoints), unless the recipe sets it
    "report_to": "none",  # the recipe's `tracking:` names the trackers
    "project": "hftk",  # trackio's project, MLflow's experiment and W&B's project, unless their settings say
    # Batches of similar length waste little compute on padding: the main reason hftk trains faster
    # than scripts that pad every example to a fixed length.
    "train_sampling_strategy": "group_by_length",
}


# What a run without validation data sets, whatever the recipe says: nothing to evaluate or pick the best by.
NO_EVALUATION: dict[str, Any] = {"eval_strategy": "no", "load_best_model_at_end": False, "eval_on_start": False}


# The largest number a search or a training setting may hold: every integer up to it is exact as a float, and
# no hyper-parameter needs more (1e308 epochs overflow Trainer's step count; inf breaks Optuna's sampling).
LARGEST = 2**53
# numpy seeds the run with `seed`, and takes 0 .. 2**32 - 1 only.
SEEDS = 2**32


def number_problem(value: Any) -> str | None:
    """Why a number cannot be a setting (not finite, or beyond LARGEST), else None; non-numbers pass."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if abs(value) > LARGEST:  # an int too large for a float is shown by its size
        got = f"{value:.3g}" if isinstance(value, float) or value.bit_length() < 1000 else f"{value.bit_length()} bits"
        return f"must be at most 2**53 ({LARGEST:.3g}) in size, got {got}"
    return None


def training_fields() -> dict[str, dataclasses.Field[Any]]:
    from transformers import TrainingArguments

    return {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}


# Fields hftk sets itself: a recipe naming them would be silently overridden, so it is told.
_HFTK_OWNED = {"output_dir": "use the top-level output_dir: key or --output"}


def check_training(training: dict[str, Any], recipe: dict[str, Any], locate: Callable[..., str]) -> list[str]:
    """Check a recipe's `training:` block against TrainingArguments: names, simple types, then its own checks.

    `recipe` is the whole mapping (whether it has validation data changes the rules), `locate` gives the
    'file:line: ' of a dotted key."""
    fields = training_fields()
    errors = []
    for key, value in training.items():
        prefix = locate("training", key)
        if key in _HFTK_OWNED:
            errors.append(f"{prefix}training.{key}: set by hftk; {_HFTK_OWNED[key]}")
        elif key not in fields:
            hint = did_you_mean(key, fields)
            errors.append(f"{prefix}training.{key}: not a TrainingArguments field{hint}; see the transformers docs")
        elif (problem := _type_problem(fields[key].type, value)) is not None:
            errors.append(f"{prefix}training.{key}: expected {problem}, got {value!r}")
        elif (problem := _range_problem(key, value, training)) is not None:
            errors.append(f"{prefix}training.{key}: {problem}")
    if errors:
        return errors
    from transformers import TrainingArguments

    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    # Without validation data, training keeps no best model (prepare.training_arguments), so the best model's
    # schedule rules do not apply; the rest of the block is checked as written.
    no_eval = {} if data.get("validation") or data.get("validation_fraction") else {"load_best_model_at_end": False}
    try:
        TrainingArguments(output_dir="unused", **{**TRAINING_DEFAULTS, **training, **no_eval})
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [f"{locate('training')}training: {first}"]
    return []


# Numbers TrainingArguments accepts at 0 or below and then fails on (a traceback mid-run) or trains nothing with.
_POSITIVE = {
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
}


def _range_problem(key: str, value: Any, training: dict[str, Any]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if (problem := number_problem(value)) is not None:
        return problem
    if key in ("seed", "data_seed") and not 0 <= value < SEEDS:
        return f"must be 0 .. 2**32 - 1 (numpy's seeds), got {value!r}"
    if key in _POSITIVE and value <= 0:
        return f"must be above 0, got {value!r}"
    steps = training.get("max_steps")
    if key == "num_train_epochs" and value <= 0 and not (isinstance(steps, int) and steps > 0):
        return f"must be above 0 (or set max_steps), got {value!r}: the run would train nothing"
    return None


def _type_problem(annotation: Any, value: Any) -> str | None:
    """A short expected-type description when `value` clearly does not fit `annotation`, else None."""
    if isinstance(annotation, str):  # postponed annotations in transformers' dataclass
        names = {"int": int, "float": float, "bool": bool, "str": str}
        simple = annotation.replace("typing.", "").replace("Optional[", "").rstrip("]")
        allowed = {names[p.strip()] for p in simple.split("|") if p.strip() in names}
        optional = "None" in annotation or "Optional" in annotation
    else:
        args = typing.get_args(annotation)
        optional = type(None) in args
        flat = args if (typing.get_origin(annotation) in (typing.Union, types.UnionType)) else (annotation,)
        allowed = {a for a in flat if a in (int, float, bool, str)}
        if any(a not in (int, float, bool, str, type(None)) for a in flat):
            return None  # enums, dicts, lists: left to TrainingArguments' own checks
    if not allowed or (value is None and optional):
        return None
    if bool in allowed and isinstance(value, bool):
        return None
    if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        return None
    if str in allowed and isinstance(value, str):
        return None
    return " or ".join(sorted(t.__name__ for t in allowed))
