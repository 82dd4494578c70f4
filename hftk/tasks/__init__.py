"""Task adapters, found by their `task:` name. Each module in this package defines one Task subclass."""

from __future__ import annotations

import importlib
import pkgutil

from hftk.tasks.base import Task

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
    """transformers.pipeline task name -> hftk task name (fill-mask -> masked-lm, translation -> seq2seq)."""
    return {alias: name for name, cls in _registry().items() for alias in (cls.pipeline_task, *cls.pipeline_aliases)}


def resolve_task(name: str) -> str:
    """The hftk task for a `task:` value or a pipeline task name; unknown names are returned unchanged."""
    return name if name in _registry() else pipeline_names().get(name, name)


def get_task(name: str) -> type[Task]:
    return _registry()[resolve_task(name)]


def recipe_class(name: str):
    cls = _registry().get(name)
    return cls.recipe_class if cls else None


__all__ = ["Task", "get_task", "pipeline_names", "recipe_class", "resolve_task", "task_names"]
