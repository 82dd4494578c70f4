"""The recipe's schema: the fields every task shares (each task adds its own in a Recipe subclass).

One recipe says model, task, data, hyper-parameters and output. Reading and validating a file, with every problem
located, is config/reading.py; the `training:` block is checked against TrainingArguments itself
(config/training.py); the YAML is read as YAML 1.2 (config/yaml.py).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from hftk.config.training import SEEDS, number_problem
from hftk.errors import did_you_mean
from hftk.models import lora


def label_strings(v: Any) -> Any:
    """YAML reads `{0: negative}` with int keys; data values are compared as strings."""
    if isinstance(v, dict):
        return {str(k): str(val) for k, val in v.items()}
    if isinstance(v, list):
        return [str(x) for x in v]
    return v


# Trackers a run can log to (Trainer's `report_to` names); training/tracking.py sets each up.
TRACKERS = ("tensorboard", "mlflow", "trackio", "wandb")


def tracker_names(v: Any) -> Any:
    """`tracking: tensorboard` or a list of names -> the list, each once; null, `none` and [] -> no tracker."""
    names = [] if v is None or v == "none" else [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("give a tracker's name or a list of them, e.g. [tensorboard, mlflow]")
    for name in names:
        if name not in TRACKERS:
            hint = did_you_mean(name, TRACKERS)
            raise ValueError(f"{name!r} is not a tracker hftk sets up{hint}; use {', '.join(TRACKERS)}")
    return list(dict.fromkeys(names))


# `labels:` of a recipe: an order (list), or data value -> name (mapping, e.g. {0: negative, 1: positive}).
Labels = Annotated[list[str] | dict[str, str] | None, BeforeValidator(label_strings)]
LabelMap = Annotated[dict[str, str] | None, BeforeValidator(label_strings)]


class Strict(BaseModel):
    """A recipe section: unknown keys are errors (with did-you-mean), never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    """Where the examples are and which file column plays which role for the task."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None
    # Without a validation file: hold out this share of train as the validation split, seeded by the recipe's
    # seed and cut as the task says (stratified by label, a QA context's questions together; hftk/data/partition.py).
    validation_fraction: float | None = Field(default=None, gt=0, lt=1)
    # role -> column in the files, e.g. {text: sentence}; a role not named here is read from the column of
    # the same name. Roles are declared by each task; columns are never guessed.
    columns: dict[str, str] = Field(default_factory=dict)
    # For CSV/TSV files without a header row: the names of their columns, in order.
    column_names: list[str] | None = None
    # Multi-label data whose label cell is one string, e.g. "joy,anger" with label_delimiter: ",".
    label_delimiter: str | None = None
    # A hub dataset (online users): train/validation/test then name its splits.
    hub: str | None = None
    hub_config: str | None = None
    # Processes that tokenise the training data (default: the machine's cores; small data uses one).
    num_proc: int | None = Field(default=None, ge=1)
    # Keep tokenised training data in the cache (HF_DATASETS_CACHE/hftk) and reuse it while the files, the
    # tokenizer and the settings are the same; false (or --no-cache) tokenises anew and keeps nothing.
    cache: bool = True
    # Train from a stream: rows (or documents) are read, tokenised and batched on the fly, never held or stored
    # whole: data larger than memory or disk. Needs training.max_steps, since a stream has no length.
    streaming: bool = False

    def column(self, role: str) -> str:
        return self.columns.get(role, role)

    @model_validator(mode="after")
    def _one_validation_source(self) -> DataConfig:
        if self.validation is not None and self.validation_fraction is not None:
            raise ValueError("validation and validation_fraction both set; keep one")
        return self


class CardSettings(Strict):
    """What the model card's metadata says beyond what the run knows (the Hub shows and filters by it)."""

    language: str | list[str] | None = None  # ISO 639-1, e.g. en or [ja, en]
    license: str | None = None  # e.g. apache-2.0, mit, cc-by-4.0
    datasets: list[str] = Field(default_factory=list)  # hub ids of the training data, e.g. [glue]
    tags: list[str] = Field(default_factory=list)


class SearchSpace(Strict):
    """One searched field of `search:`: a range (`low`..`high`, log-uniform with `log: true`, in steps of `step`;
    integers when both ends are) or a list of `choices`."""

    low: int | float | None = None  # int first: an int stays an int, so `{low: 2, high: 8}` is an integer range
    high: int | float | None = None
    log: bool = False
    step: int | float | None = Field(default=None, gt=0)
    choices: list[str | int | float | bool | None] | None = Field(default=None, min_length=1)
    # 'recipe.yaml:17: search.KEY': where the field is, for the checks that need the model (prepare).
    _where: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _one_form(self) -> SearchSpace:
        for name in ("low", "high", "step"):
            if (problem := number_problem(getattr(self, name))) is not None:
                raise ValueError(f"{name} {problem}")
        for choice in self.choices or ():
            if (problem := number_problem(choice)) is not None:
                raise ValueError(f"each choice {problem}")
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.log or self.step is not None:
                raise ValueError("give either choices or low/high (with log, step), not both")
            if len({repr(c) for c in self.choices}) < len(self.choices):
                raise ValueError("choices repeat a value; list each once")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (a range) or choices (a list)")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step do not combine; drop one")
        return self

    @property
    def where(self) -> str:
        """'recipe.yaml:17: search.KEY' once validated from a file, else ''."""
        return self._where

    def values(self) -> list[Any]:
        """The values validation tries on the recipe: each choice, or both ends of the range."""
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        """Whether the search can propose `value` (a choice, or a point of the range and its steps)."""
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.integers and not isinstance(value, int):
            return False
        return self.step is None or math.isclose((value - self.low) / self.step % 1, 0, abs_tol=1e-9)

    @property
    def integers(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1))

    def distribution(self) -> Any:
        """The space as Optuna's distribution (what `hftk tune` samples from)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.integers:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)


class Recipe(Strict):
    """Fields every task shares. Each task adds its own in a subclass keyed on `task`."""

    task: str
    model: str
    data: DataConfig
    output_dir: str = "runs/model"
    max_length: int | None = Field(default=None, gt=0)
    training: dict[str, Any] = Field(default_factory=dict)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    early_stopping_patience: int | None = Field(default=None, ge=1)
    # Trainer's checkpoints stay in OUTPUT/checkpoints for --resume and inspection; false deletes them once the
    # model is saved (a small run's checkpoints outweigh its model several times).
    keep_checkpoints: bool = True
    # LoRA or another peft method: {method: lora, r: 8, alpha: 16, dropout: 0.1, target_modules: [...],
    # merge: true}; the method's own options are checked against peft's config class.
    peft: lora.PeftSettings | None = None
    trust_remote_code: bool = False
    seed: int = Field(default=42, ge=0, lt=SEEDS)
    # Model card metadata for the Hub (hftk push): language, license, datasets, tags.
    card: CardSettings = Field(default_factory=CardSettings)
    # `hftk tune`'s search space: dotted recipe field -> SearchSpace, e.g.
    # {training.learning_rate: {low: 1e-5, high: 1e-4, log: true}, training.num_train_epochs: {choices: [2, 3]}}.
    # `hftk train` ignores it.
    search: dict[str, SearchSpace] = Field(default_factory=dict)
    # Where the run is watched: TensorBoard, MLflow, trackio, W&B (one name or a list), offline by default.
    tracking: Annotated[list[str], BeforeValidator(tracker_names)] = Field(default_factory=list)
    # Whether the task can train from a stream (`data.streaming`); the others read their data whole.
    streams: ClassVar[bool] = False

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a local model directory, a hub id or package:NAME")
        return v

    @model_validator(mode="after")
    def _stream_fits(self) -> Recipe:
        if not self.data.streaming:
            return self
        if not self.streams:
            raise ValueError(
                f"data.streaming: {self.task} reads its data whole (text-classification, masked-lm and causal-lm "
                "stream); remove data.streaming"
            )
        steps = self.training.get("max_steps")
        if not (isinstance(steps, int) and steps > 0):
            raise ValueError(
                "data.streaming: true needs training.max_steps (a stream has no length to count epochs in); "
                "set training.max_steps"
            )
        return self
