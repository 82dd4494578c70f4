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


def get_task(name: str) -> type[Task]:
    return _registry()[name]


def recipe_class(name: str):
    cls = _registry().get(name)
    return cls.recipe_class if cls else None


__all__ = ["Task", "get_task", "recipe_class", "task_names"]
