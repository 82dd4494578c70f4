"""A recipe file (or dict) -> the task's validated Recipe: every problem at once, one line each, located in the
file; `--set` overrides; the resolved recipe written back as YAML."""

from __future__ import annotations

import dataclasses
import glob
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hftk.config.recipe import Recipe, SearchSpace
from hftk.config.training import check_training
from hftk.config.yaml import line_of, safe_load
from hftk.errors import HftkError, did_you_mean, not_utf8
from hftk.models import lora


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
        line = line_of(self.text, list(dotted))
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


def validate_recipe(
    cls: type[Recipe],
    raw: RawRecipe,
    elsewhere: dict[str, list[str]] | None = None,
    *,
    trained: bool = False,
) -> Recipe:
    """`raw` as the task's Recipe class; every problem at once, one line each, located in the file. `elsewhere`:
    the tasks whose recipes have a top-level key this one lacks, to name when a recipe gives it.
    `trained`: a model folder's recipe, whose training: and search: blocks were checked (against TrainingArguments,
    which imports Trainer's stack) when it trained.

    Raises:
        HftkError: with one line per problem.
    """
    errors: list[str] = []
    recipe = None
    _report_to_as_tracking(raw)
    try:
        recipe = cls.model_validate(raw.data)
    except ValidationError as e:
        errors.extend(_format_pydantic_error(err, cls, raw, elsewhere or {}) for err in e.errors())
    training = raw.data.get("training") or {}
    if isinstance(training, dict) and not trained:
        errors.extend(check_training(training, raw.data, raw.locate))
    if isinstance(raw.data.get("peft"), dict):
        errors.extend(f"{raw.locate(*key.split('.'))}{key}: {msg}" for key, msg in lora.problems(raw.data["peft"]))
    if errors or recipe is None:
        raise HftkError("\n".join(errors))
    if not trained and (errors := _check_search(cls, recipe, raw)):
        raise HftkError("\n".join(errors))
    return recipe


def _report_to_as_tracking(raw: RawRecipe) -> None:
    """`training.report_to` (Trainer's name, which recipes and saved model folders used before `tracking:`) is read
    as `tracking:`, so those recipes keep training and their folders keep loading; both at once is an error."""
    training = raw.data.get("training")
    if not isinstance(training, dict) or "report_to" not in training:
        return
    if "tracking" in raw.data:
        raise HftkError(
            f"{raw.locate('training', 'report_to')}training.report_to: the recipe names its trackers in tracking:; "
            "remove training.report_to"
        )
    raw.data["training"] = {k: v for k, v in training.items() if k != "report_to"}
    raw.data["tracking"] = training["report_to"]


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


def dotted(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys: {"training": {"learning_rate": 1e-4}} -> {"training.learning_rate": 1e-4}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out |= dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


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


def _format_pydantic_error(err: Any, cls: type[BaseModel], raw: RawRecipe, elsewhere: dict[str, list[str]]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    dotted = ".".join(str(p) for p in loc)
    prefix = raw.locate(*loc)
    if err["type"] == "extra_forbidden":
        if len(loc) == 1 and (tasks := elsewhere.get(str(loc[0]))):
            task = raw.data.get("task")
            verb = "takes" if len(tasks) == 1 else "take"
            return f"{prefix}{dotted}: not a key of {task} recipes (only {' and '.join(tasks)} {verb} it); remove it"
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
