"""The small interface every task adapter implements; loading, Trainer, saving and prediction are shared."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from hftk.data import Records
from hftk.recipe import Recipe


class Task:
    """Turns records into features and model outputs into metrics and user-facing predictions.

    Subclasses set the class attributes and implement the methods that raise NotImplementedError.
    """

    name: ClassVar[str]  # the recipe's `task:` value
    pipeline_task: ClassVar[str]  # the transformers.pipeline task that loads the output directory
    recipe_class: ClassVar[type[Recipe]]
    # Roles the task reads from data files: needed to predict (inputs) and only to train/evaluate (targets).
    input_roles: ClassVar[tuple[str, ...]] = ()
    optional_roles: ClassVar[tuple[str, ...]] = ()
    target_roles: ClassVar[tuple[str, ...]] = ()
    main_metric: ClassVar[str]
    greater_is_better: ClassVar[bool] = True

    def __init__(self, recipe: Recipe, tokenizer: Any) -> None:
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.max_length = min(recipe.max_length or 512, _model_max_length(tokenizer))

    # -- data ------------------------------------------------------------------------------------------
    def fit(self, train: Records) -> None:
        """Learn what the model's head needs from the training data (e.g. the label vocabulary)."""

    def encode(self, records: Records, *, with_targets: bool) -> dict[str, list[Any]]:
        """Records -> feature columns (input_ids, ..., labels when with_targets)."""
        raise NotImplementedError

    def targets(self, records: Records) -> list[Any]:
        """What the model learns to predict for each record (label ids, values, spans...)."""
        raise NotImplementedError

    def lengths(self, records: Records) -> list[int] | None:
        """Untruncated token counts of each record's input, for `hftk check`; None when not meaningful."""
        return None

    def summary(self, records: Records) -> dict[str, Any]:
        """What `hftk check` prints about a split beyond its size, e.g. label counts."""
        return {}

    def column(self, records: Records, role: str) -> list[Any]:
        return records.column(self.recipe.data.column(role), role)

    def has_role(self, records: Records, role: str) -> bool:
        return self.recipe.data.column(role) in records.columns

    # -- model -----------------------------------------------------------------------------------------
    def auto_model(self) -> Any:
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """Config overrides for from_pretrained (num_labels, id2label, ...)."""
        return {}

    def collator(self, pad_to_multiple_of: int | None = None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    @classmethod
    def from_trained(cls, recipe: Recipe, tokenizer: Any, config: Any) -> Task:
        """The task of a trained model directory, its head read back from the saved config."""
        return cls(recipe, tokenizer)

    # -- outputs ---------------------------------------------------------------------------------------
    def metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def decode(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        """A batch of model outputs -> one JSON-able prediction per example."""
        raise NotImplementedError


def _model_max_length(tokenizer: Any) -> int:
    n = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel (int(1e30)); BERT-style position tables stop at 512.
    return n if isinstance(n, int) and 0 < n < 100_000 else 512
