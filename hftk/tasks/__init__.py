"""Task adapters, found by their `task:` name: the one way from a recipe's `task:` to its code.

Each module in this package defines one Task subclass; the registry imports them all on first use. A recipe is
read here too, because its `task:` says which Recipe class validates the rest (the recipe schema never imports
the tasks it describes).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from hftk.config.reading import read_recipe, validate_recipe
from hftk.config.recipe import Recipe
from hftk.errors import HftkError, did_you_mean
from hftk.tasks.base import Features, Task

__all__ = [
    "Features",
    "Task",
    "get_task",
    "load_recipe",
    "pipeline_names",
    "resolve_task",
    "task_names",
]

_REGISTRY: dict[str, type[Task]] = {}


def _registry() -> dict[str, type[Task]]:
    if not _REGISTRY:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        stack = list(Task.__subclasses__())
        while stack:
            cls = stack.pop()
            stack.extend(cls.__subclasses__())
            if "name" in cls.__dict__:
                _REGISTRY[cls.name] = cls
    return _REGISTRY


def task_names() -> list[str]:
    return sorted(_registry())


def pipeline_names() -> dict[str, str]:
    """transformers.pipeline task name -> hftk task name (fill-mask -> masked-lm, translation -> seq2seq). A task that
    extends another and serves its pipeline (preference: causal-lm's text-generation) leaves the name to it."""
    registry = _registry()
    return {
        alias: name
        for name, cls in registry.items()
        for alias in (cls.pipeline_task, *cls.pipeline_aliases)
        if not any(o is not cls and issubclass(cls, o) and o.pipeline_task == alias for o in registry.values())
    }


def resolve_task(name: str) -> str:
    """The hftk task for a `task:` value or a pipeline task name; unknown names are returned unchanged."""
    return name if name in _registry() else pipeline_names().get(name, name)


def get_task(name: str, *, where: str = "--task ") -> type[Task]:
    """The Task class for an hftk task or pipeline task name.

    Raises:
        HftkError: an unknown name, with the closest known one; `where` starts the message (e.g. 'file:3: task: ').
    """
    cls = _registry().get(resolve_task(name))
    if cls is None:
        known = sorted({*task_names(), *pipeline_names()})
        hint = did_you_mean(name, known)
        raise HftkError(f"{where}{name}: not a task hftk knows{hint}; choose one of {', '.join(known)}")
    return cls


def load_recipe(
    source: str | Path | dict[str, Any] | Recipe, overrides: dict[str, Any] | None = None, *, trained: bool = False
) -> Recipe:
    """Read and validate a recipe from a YAML path, a dict or an existing Recipe.

    Args:
        source: path to a YAML file, a dict with the same shape, or a Recipe.
        overrides: dotted keys to set before validation, e.g. {"training.learning_rate": 3e-5}.
        trained: the recipe.yaml of a model folder, read to predict: its training: block was checked when it
            trained and is not checked again (building TrainingArguments imports Trainer's stack, seconds of
            `hftk predict`'s start-up).

    Raises:
        HftkError: with one line per problem, all problems at once.
    """
    if isinstance(source, Recipe) and not overrides:
        return source
    raw = read_recipe(source, overrides)
    task = raw.data.get("task")
    cls = _registry().get(task) if isinstance(task, str) else None
    if cls is None:  # only hftk's own task names in a recipe, not pipeline aliases
        hint = did_you_mean(str(task), task_names())
        known = ", ".join(task_names())
        raise HftkError(f"{raw.locate('task')}task: {task!r} is not a task hftk knows{hint}; choose one of {known}")
    own = cls.recipe_class.model_fields
    elsewhere: dict[str, list[str]] = {}
    for name, other in sorted(_registry().items()):
        for key in other.recipe_class.model_fields.keys() - own.keys():
            elsewhere.setdefault(key, []).append(name)
    try:
        return validate_recipe(cls.recipe_class, raw, elsewhere, trained=trained)
    except HftkError as e:  # a column typo is reported with the recipe's other errors, not after they are fixed
        if columns := cls.recipe_column_problems(raw.data.get("data")):
            raise HftkError("\n".join([str(e), *columns])) from None
        raise
