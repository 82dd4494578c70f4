"""Recipe + data -> validated splits, the task, and Trainer's arguments: everything known before weights load.

`train`, `check` and `evaluate` all start here, so a recipe that passes `hftk check` has been through the same
reading, validation and TrainingArguments as `hftk train` gives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftk.config.recipe import Recipe
from hftk.config.training import NO_EVALUATION, TRAINING_DEFAULTS
from hftk.data.readers import read_hub_split
from hftk.data.records import Split
from hftk.errors import HftkError
from hftk.files import CHECKPOINTS
from hftk.models.loading import DevicePolicy, check_model_files, is_hub_id, load_tokenizer, model_max_length
from hftk.tasks import Task, get_task

SPLITS = ("train", "validation", "test")


@dataclass
class Prepared:
    """A validated recipe, its task (labels fitted on train) and its data splits."""

    recipe: Recipe
    task: Task
    splits: dict[str, Split]  # Records, or a stream of them (data.streaming, a text corpus)

    @property
    def has_eval(self) -> bool:
        return "validation" in self.splits


def prepare(recipe: Recipe, *, splits: tuple[str, ...] = SPLITS, tokenizer_optional: bool = False) -> Prepared:
    """Read and validate every data split named in the recipe, and fit the task's label vocabulary.

    With `tokenizer_optional`, a hub model whose tokenizer cannot be fetched (offline, not cached) leaves
    `task.tokenizer` None instead of failing: `hftk check` still validates recipe and data.
    """
    try:
        tokenizer = load_tokenizer(recipe.model, trust_remote_code=recipe.trust_remote_code)
    except HftkError:
        if not (tokenizer_optional and is_hub_id(recipe.model)):
            raise
        tokenizer = None
    check_model_files(recipe.model, tokenizer)  # weights present, vocabulary fits: before any data is read
    task = get_task(recipe.task)(recipe, tokenizer)
    check_search_lengths(recipe, tokenizer)
    data = recipe.data
    records: dict[str, Split] = {}
    for split in splits:
        source = getattr(data, split)
        if source is None:
            continue
        if data.hub:
            records[split] = read_hub_split(data.hub, data.hub_config, source)
        else:
            records[split] = task.read(source)
    problems = [
        p
        for name, split in records.items()
        for p in task.unmapped_columns(data.columns, name, split.source, split.columns)
    ]
    if problems:  # every split's at once
        raise HftkError("\n".join(problems))
    if task.trainable and "train" in splits and "train" not in records:
        raise HftkError("recipe: data.train is required to train; name the training file")
    records = task.derive_splits(records)
    if recipe.early_stopping_patience and "train" in records and "validation" not in records:
        raise HftkError(
            "recipe: early_stopping_patience stops on the validation metric, and there is no validation split; "
            "give it one (data.validation), or drop early_stopping_patience"
        )
    if "train" in records:
        task.fit(records["train"])
    return Prepared(recipe, task, records)


def check_search_lengths(recipe: Recipe, tokenizer: Any) -> None:
    """Every max_length a `search:` can propose fits the model, as the recipe's own must: found by `hftk check`,
    not by a trial that fails (the recipe's validation cannot see the model)."""
    space = recipe.search.get("max_length")
    limit = model_max_length(tokenizer)
    if space is None or limit is None:
        return
    for value in space.values():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            raise HftkError(
                f"{space.where or 'search.max_length'}: {value} is more than {recipe.model} takes ({limit} tokens); "
                f"keep the search at {limit} or less"
            )


def training_arguments(task: Task, policy: DevicePolicy, output_dir: str | Path, *, has_eval: bool) -> Any:
    """The TrainingArguments of a run, the one place they are assembled.

    Precedence, lowest first: hftk's defaults, the task's preferences, the recipe's `training:` block, the device
    policy (unless the recipe sets bf16/fp16/use_cpu itself), then what the task and hftk cannot work without:
    the checkpoint folder, the best-model metric, no evaluation when there is no validation split, and the
    recipe's trackers (`tracking:`).

    Raises:
        HftkError: a combination TrainingArguments itself rejects (e.g. a task default beside a recipe value), or
            a tracker that cannot log here (its package missing, an online one without an account or network).
    """
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    from hftk.training import tracking  # imports transformers' tracker callbacks

    recipe = task.recipe
    tracking.check(recipe)  # a tracker that would fail mid-run stops here, before any weights load
    flags = {k: v for k, v in policy.training_flags().items() if k not in recipe.training}
    if has_eval:
        fixed: dict[str, Any] = {"metric_for_best_model": task.main_metric, "greater_is_better": task.greater_is_better}
    else:
        fixed = NO_EVALUATION
    kwargs = {
        **TRAINING_DEFAULTS,
        "seed": recipe.seed,
        **task.default_arguments(has_eval),
        **recipe.training,
        **flags,
        **task.required_arguments,
        **fixed,
        **tracking.arguments(recipe, output_dir),
        "output_dir": str(Path(output_dir) / CHECKPOINTS),
    }
    cls = TrainingArguments
    if task.evaluates == "generation":  # evaluation generates and keeps token ids, not logits
        cls, kwargs = Seq2SeqTrainingArguments, {**kwargs, "predict_with_generate": True}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HftkError(f"recipe: training: {first}; change the training: block") from None
