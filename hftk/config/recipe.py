"""YAML recipe -> typed, validated `Recipe`, before any weights load.

One recipe says model, task, data, hyper-parameters and output. Every problem is reported at once, each as
one line naming the file, the YAML line and the dotted field, with a fix. The `training:` block is checked
against `transformers.TrainingArguments` itself rather than a copy of its fields.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from hftk.errors import HftkError, did_you_mean, not_utf8
from hftk.models import lora

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
    "report_to": "none",
    # Batches of similar length waste little compute on padding: the main reason hftk trains faster
    # than scripts that pad every example to a fixed length.
    "train_sampling_strategy": "group_by_length",
}


def label_strings(v: Any) -> Any:
    """YAML reads `{0: negative}` with int keys; data values are compared as strings."""
    if isinstance(v, dict):
        return {str(k): str(val) for k, val in v.items()}
    if isinstance(v, list):
        return [str(x) for x in v]
    return v


# `labels:` of a recipe: an order (list), or data value -> name (mapping, e.g. {0: negative, 1: positive}).
Labels = Annotated[list[str] | dict[str, str] | None, BeforeValidator(label_strings)]
LabelMap = Annotated[dict[str, str] | None, BeforeValidator(label_strings)]


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


# What a run without validation data sets, whatever the recipe says: nothing to evaluate or pick the best by.
NO_EVALUATION: dict[str, Any] = {"eval_strategy": "no", "load_best_model_at_end": False, "eval_on_start": False}


class Strict(BaseModel):
    """A recipe section: unknown keys are errors (with did-you-mean), never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    """Where the examples are and which file column plays which role for the task."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None
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


# ------------------------------------------------------------------------------------------------ loading


class YamlLoader(yaml.SafeLoader):
    """SafeLoader reading plain values as YAML 1.2's core schema does, so what a user types is what arrives.

    PyYAML follows YAML 1.1: `no`, `off` and `yes` become booleans (`eval_strategy: no` turned into False, which
    TrainingArguments rejects), `1:30` an integer 90, and `3e-5` stays a string. Here only true/false are booleans,
    numbers are plain decimal (or 0x/0o), `3e-5` is a float, dates stay text. A key given twice in one mapping is
    an error, not a silent overwrite of the first.
    """

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, Any]]]] = {
        first: [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float", "timestamp")
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]}); keep one", key_node.start_mark
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
):
    YamlLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def safe_load(text: str) -> Any:
    """`yaml.safe_load` with the float fix above: only plain YAML types, never Python objects."""
    loader = YamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass
class RawRecipe:
    """A recipe as read, before validation: the mapping, and where it came from for located errors."""

    data: dict[str, Any]
    where: str = "<recipe>"  # the file, or <recipe> for a dict
    text: str | None = None  # the YAML text, to find the line of a key
    overridden: set[str] = dataclasses.field(default_factory=set)  # dotted keys set by --set, not the file

    def locate(self, *dotted: str | int) -> str:
        """'file:line: ' of a dotted key (or its nearest parent that exists), 'file: ' without one; '--set '
        for a key the command line set (the file is not to blame)."""
        key = ".".join(map(str, dotted))
        if any(key == o or key.startswith(o + ".") for o in self.overridden):
            return "--set "
        line = _line_of(self.text, list(dotted))
        return f"{self.where}:{line}: " if line else f"{self.where}: "


def read_recipe(source: str | Path | dict[str, Any] | Recipe, overrides: dict[str, Any] | None = None) -> RawRecipe:
    """A recipe's YAML file (or dict, or Recipe) as a mapping with `overrides` set; not yet validated.

    Raises:
        HftkError: a missing or unreadable file, invalid YAML, or something other than a mapping.
    """
    if isinstance(source, Recipe):
        source = source.model_dump()
    if isinstance(source, dict):
        raw = RawRecipe(_deep_copy(source))
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise HftkError(f"{path}: recipe file not found; check the path") from None
        except IsADirectoryError:
            raise HftkError(f"{path}: a folder, not a recipe file; name the recipe's .yaml file") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise not_utf8(path, data, e) from None
        try:
            mapping = safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise HftkError(f"{path}{line}: invalid YAML: {problem}; fix the syntax") from None
        if mapping is None:
            raise HftkError(f"{path}: the recipe is empty; write task:, model: and data: (see recipes/)")
        if not isinstance(mapping, dict):
            raise HftkError(f"{path}: a recipe is a YAML mapping (key: value lines), got {type(mapping).__name__}")
        _beside_the_recipe(mapping, path.parent)
        raw = RawRecipe(mapping, str(path), text)
    for key, value in (overrides or {}).items():  # --set paths stay relative to the current folder
        _set_dotted(raw.data, key, value, raw.where)
        raw.overridden.add(key)
    return raw


def _beside_the_recipe(mapping: dict[str, Any], folder: Path) -> None:
    """Relative data paths in a recipe file name files beside the recipe (as compose files and CI configs do), so
    `hftk train path/to/recipe.yaml` works from any folder; a path found only from the current folder (recipes
    written before) still works."""
    data = mapping.get("data")
    if not isinstance(data, dict) or data.get("hub"):  # hub datasets name splits, not files
        return
    for split in ("train", "validation", "test"):
        value = data.get(split)
        if isinstance(value, str):
            data[split] = _beside(value, folder)
        elif isinstance(value, list):
            data[split] = [_beside(v, folder) if isinstance(v, str) else v for v in value]


def _beside(value: str, folder: Path) -> str:
    if Path(value).is_absolute():
        return value
    candidate = os.path.normpath(folder / value)
    found = glob.glob(candidate, recursive=True) if glob.has_magic(value) else os.path.exists(candidate)
    return candidate if found else value


def validate_recipe(cls: type[Recipe], raw: RawRecipe) -> Recipe:
    """`raw` as the task's Recipe class; every problem at once, one line each, located in the file.

    Raises:
        HftkError: with one line per problem.
    """
    errors: list[str] = []
    recipe = None
    try:
        recipe = cls.model_validate(raw.data)
    except ValidationError as e:
        errors.extend(_format_pydantic_error(err, cls, raw) for err in e.errors())
    training = raw.data.get("training") or {}
    if isinstance(training, dict):
        errors.extend(_check_training(training, raw))
    if isinstance(raw.data.get("peft"), dict):
        errors.extend(f"{raw.locate(*key.split('.'))}{key}: {msg}" for key, msg in lora.problems(raw.data["peft"]))
    if errors or recipe is None:
        raise HftkError("\n".join(errors))
    if errors := _check_search(cls, recipe, raw):
        raise HftkError("\n".join(errors))
    return recipe


# Fields a search may not change: where the study writes, and the search itself.
_NOT_SEARCHED = {"output_dir": "every trial writes into the study's folder", "search": "a search of the search"}


def _check_search(cls: type[Recipe], recipe: Recipe, raw: RawRecipe) -> list[str]:
    """Each searched field is validated as the recipe field it sets: the recipe with each choice (or each end of a
    range) in its place must pass validation. A misspelt field, a value of the wrong type or out of TrainingArguments'
    range is then found here, before any trial runs, with the same message `hftk train` would give."""
    errors = []
    base = {k: v for k, v in raw.data.items() if k != "search"}
    for key, space in recipe.search.items():
        prefix = f"{raw.locate('search', key)}search.{key}"
        top = key.split(".", 1)[0]
        if top in _NOT_SEARCHED or not all(key.split(".")):
            errors.append(f"{prefix}: not searchable ({_NOT_SEARCHED.get(top, 'an empty part in the key')})")
            continue
        space._where = prefix
        for value in space.values():
            if (first := _fails(cls, base, key, value)) is not None:
                errors.append(f"{prefix}: with {value!r}: {first}")
                break
        else:  # both ends pass; a float range also proposes the values between, which an int field refuses
            probe = None if space.choices is not None or space.integers else _between(space)
            if probe is not None and (first := _fails(cls, base, key, probe)) is not None:
                errors.append(
                    f"{prefix}: a range of floats proposes values such as {probe!r}, which fail ({first}); "
                    "give int low, high (and step) for an integer field"
                )
    return errors


def _fails(cls: type[Recipe], base: dict[str, Any], key: str, value: Any) -> str | None:
    """The first error of the recipe `base` with `key` set to `value`, or None when it validates."""
    trial = RawRecipe(_deep_copy(base))
    try:
        _set_dotted(trial.data, key, value, "search")
        validate_recipe(cls, trial)
    except HftkError as e:
        return str(e).splitlines()[0].removeprefix(f"{trial.where}: ").removeprefix("search: ")
    return None


def _between(space: SearchSpace) -> int | float:
    """A value inside the range: its first step, or its middle (an int field refuses both when they are floats)."""
    return space.low + space.step if space.step else (space.low + space.high) / 2  # type: ignore[operator]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["training.learning_rate=3e-5", ...]` -> {"training.learning_rate": 3e-05}; values parsed as YAML."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not all(part.strip() for part in key.split(".")):
            raise HftkError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set training.learning_rate=3e-5")
        out[key.strip()] = _override_value(value)
    return out


def _override_value(value: str) -> Any:
    """A --set value as YAML (numbers, true/false, null, [lists], {maps}), else the text as typed: YAML syntax
    that would swallow it (`|`, `>`, `#...`, `&x`, `!tag`) never turns it into '' or None."""
    text = value.strip()
    if not text:
        return ""
    try:
        parsed = safe_load(value)
    except yaml.YAMLError:
        return value
    if parsed is None and text not in ("null", "Null", "NULL", "~"):
        return value
    if parsed == "" and text not in ("''", '""'):
        return value
    return parsed


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, as saved next to a trained model.

    Its data files (and a local base model) are saved as absolute paths: relative ones meant the training run's
    folder, so `hftk evaluate` or `export` run elsewhere, or on a model folder moved since, would find none. A
    path relative to the output folder would break as soon as the folder moves without the data."""
    mapping = recipe.model_dump(mode="json")
    data = mapping["data"]
    if not data.get("hub"):  # hub datasets name splits, not files
        for split in ("train", "validation", "test"):
            value = data.get(split)
            if isinstance(value, str):
                data[split] = os.path.abspath(value)
            elif isinstance(value, list):  # a language-model corpus: several files, folders or globs
                data[split] = [os.path.abspath(v) for v in value]
    if not recipe.model.startswith("package:") and Path(recipe.model).exists():
        mapping["model"] = os.path.abspath(recipe.model)
    return yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------------ helpers


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def _set_dotted(raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise HftkError(f"{where}: cannot set {key!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def _line_of(text: str | None, dotted: list[str | int]) -> int | None:
    """1-based YAML line of a dotted key, or of its nearest existing parent."""
    if text is None:
        return None
    try:
        node = yaml.compose(text, Loader=YamlLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _fields_of(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at `loc`'s parent, for 'did you mean'."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
        for arg in typing.get_args(current) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    return list(getattr(current, "model_fields", {}) or [])


def _format_pydantic_error(err: Any, cls: type[BaseModel], raw: RawRecipe) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    dotted = ".".join(str(p) for p in loc)
    prefix = raw.locate(*loc)
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _fields_of(cls, loc))
        return f"{prefix}{dotted}: unknown key{hint}; remove it or fix its spelling"
    if err["type"] == "missing":
        return f"{prefix}{dotted}: required; add it to the recipe"
    got = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:  # a check across fields: its message starts with the field it names, e.g. "data.streaming: ..."
        field = msg.split(": ", 1)[0]
        return f"{raw.locate(*field.split('.'))}{msg}"
    return f"{prefix}{dotted}: {msg} (got {got!r})"


def _training_fields() -> dict[str, dataclasses.Field[Any]]:
    from transformers import TrainingArguments

    return {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}


# Fields hftk sets itself: a recipe naming them would be silently overridden, so it is told.
_HFTK_OWNED = {"output_dir": "use the top-level output_dir: key or --output"}


def _check_training(training: dict[str, Any], raw: RawRecipe) -> list[str]:
    """Check the `training:` block against TrainingArguments: names, simple types, then its own checks."""
    fields = _training_fields()
    errors = []
    for key, value in training.items():
        prefix = raw.locate("training", key)
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

    data = raw.data.get("data") if isinstance(raw.data.get("data"), dict) else {}
    # Without validation data, training keeps no best model (prepare.training_arguments), so the best model's
    # schedule rules do not apply; the rest of the block is checked as written.
    no_eval = {} if data.get("validation") or data.get("validation_fraction") else {"load_best_model_at_end": False}
    try:
        TrainingArguments(output_dir="unused", **{**TRAINING_DEFAULTS, **training, **no_eval})
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [f"{raw.locate('training')}training: {first}"]
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
