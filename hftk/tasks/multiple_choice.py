"""Multiple choice (SWAG, JCommonsenseQA): a question or context, 2..N choices, the gold choice's index.

Each record becomes one feature of shape [choices, tokens]: the question paired with each choice, as
`AutoModelForMultipleChoice` (and transformers' run_swag, and JGLUE's scripts) take them. The model scores every
pair and a softmax over a row's choices picks the answer.

Truncation: a pair longer than `max_length` loses tokens from the end of whichever side is longer at the time
(the tokenizer's `longest_first`, as run_swag and JGLUE do). Choices are short, so in practice the end of the
question is cut and every choice stays whole; a choice is cut only once the question is down to its length.
`hftk check` counts the rows whose longest pair exceeds `max_length`.

transformers has no multiple-choice pipeline: the output directory loads with
`AutoModelForMultipleChoice.from_pretrained(DIR)`, and `hftk predict`/`evaluate`/`serve` (or
`hftk.Predictor(DIR)`) answer with `{"answer", "index", "scores"}`.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from hftk.config.recipe import Recipe
from hftk.data.records import Records, Split
from hftk.errors import HftkError
from hftk.report import Section
from hftk.report.answers import choice_sections
from hftk.tasks.base import Features, Task


class MultipleChoiceRecipe(Recipe):
    task: Literal["multiple-choice"]
    # Where a row's choices are: one column per choice, in order (JCommonsenseQA: [choice0, ..., choice4]; SWAG:
    # [ending0, ending1, ending2, ending3]), or the name of one column that holds each row's choices as a list.
    choices: str | list[str] = "choices"

    @field_validator("choices")
    @classmethod
    def _columns(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("name the column that holds the choices (a list), or list one column per choice")
            return v
        if len(v) < 2:
            raise ValueError("list at least two choice columns, or name the one column that holds a list")
        if twice := [c for c, n in Counter(v).items() if n > 1]:
            raise ValueError(f"column {twice[0]!r} is listed twice; each choice has its own column")
        return v


class MultipleChoice(Task):
    name = "multiple-choice"
    # No transformers pipeline has this name (transformers has no multiple-choice pipeline): it names the task on
    # the Hub (pipeline_tag) and for `hftk predict --task`; the folder loads with AutoModelForMultipleChoice.
    pipeline_task = "multiple-choice"
    has_pipeline = False
    recipe_class = MultipleChoiceRecipe
    input_roles = ("question",)  # the choices are named by the recipe's `choices:` (columns or a list column)
    target_roles = ("label",)  # the gold choice's index, from 0
    main_metric = "accuracy"
    # peft has no multiple-choice type; its sequence-classification model passes inputs through unchanged and keeps
    # the head named `classifier` (BertForMultipleChoice's too) trainable and saved beside the adapter.
    peft_task_type = "SEQ_CLS"
    example_file = "train.jsonl"
    example_fields = ("choices: [choice0, choice1, choice2, choice3]   # one column per choice, or one list column",)
    recipe: MultipleChoiceRecipe

    def choices_input(self) -> str | list[str]:
        return self.recipe.choices

    def input_columns(self) -> list[str]:
        choices = self.recipe.choices
        return [*super().input_columns(), *([choices] if isinstance(choices, str) else choices)]

    def example_input(self) -> dict[str, Any]:
        return {"question": "Which of these is a fruit?"}

    def example_row(self) -> dict[str, Any]:
        answers = ["a stone", "an apple", "a chair", "a river", "a cloud", "a song", "a road", "a coat"]
        choices = self.recipe.choices
        named = {choices: answers[:4]} if isinstance(choices, str) else dict(zip(choices, answers))
        return {**super().example_row(), **named}

    def default_arguments(self, has_eval: bool) -> dict[str, Any]:
        # Trainer's length grouping would measure a feature by its number of choices, the same for every row:
        # it would cost a pass over the data and group nothing.
        return {"train_sampling_strategy": "random"}

    def export_outputs(self) -> tuple[str, ...] | None:
        # Not exportable. Said here rather than by returning None, whose message in export.py is about generation.
        raise HftkError(
            "multiple-choice: hftk export traces inputs of [batch, tokens] and these models take [batch, choices, "
            "tokens]; serve the folder itself (hftk serve)"
        )

    # -- data ------------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Records:
        records = super().read(path).whole()
        self.choices(records)  # the whole file: every batch encoded later must agree on the number of choices
        return records

    def choices(self, records: Records) -> list[list[str]]:
        """Each row's choices, checked: text, none empty, the same number in every row of the file."""
        spec = self.recipe.choices
        have = ", ".join(records.columns) or "none"
        if isinstance(spec, str):
            if spec not in records.columns:
                raise HftkError(
                    f"{records.source}: no column {spec!r} holding the choices (columns: {have}); name it with "
                    "choices: COLUMN in the recipe, or list one column per choice (choices: [choice0, choice1, ...])"
                )
            rows = records.column(spec)
            for i, v in enumerate(rows):
                if not isinstance(v, list):
                    raise HftkError(
                        f"{records.where(i)}: column {spec!r} must hold a list of choices, got {type(v).__name__} "
                        f"{v!r}; store a list, or list one column per choice under choices: in the recipe"
                    )
            names = None
        else:
            if missing := [c for c in spec if c not in records.columns]:
                raise HftkError(
                    f"{records.source}: no column {missing[0]!r}, which choices: names (columns: {have}); "
                    "fix choices: in the recipe"
                )
            rows = [list(row) for row in zip(*(records.column(c) for c in spec))]
            names = spec
        first = len(rows[0]) if rows else 0
        for i, row in enumerate(rows):
            if len(row) != first:
                raise HftkError(
                    f"{records.where(i)}: {len(row)} choices, but {records.where(0)} has {first}; give every row "
                    "of a file the same number of choices"
                )
            if len(row) < 2:
                raise HftkError(f"{records.where(i)}: {len(row)} choice; a row needs at least two")
            for j, text in enumerate(row):
                which = f"choice {j}" + (f" (column {names[j]!r})" if names else "")
                if not isinstance(text, str):
                    raise HftkError(f"{records.where(i)}: {which} must be text, got {type(text).__name__} {text!r}")
                if not text.strip():
                    raise HftkError(f"{records.where(i)}: {which} is empty; fill it or drop the row")
        return rows

    def targets(self, records: Records) -> list[int]:
        """The gold index of each row, an integer (or integer text, as CSV/TSV cells are) within its choices."""
        counts = [len(row) for row in self.choices(records)]
        out = []
        for i, v in enumerate(self.column(records, "label")):
            index = v if isinstance(v, int) and not isinstance(v, bool) else None
            if isinstance(v, str) and v.strip().lstrip("-").isdigit():
                index = int(v)
            if index is None:
                raise HftkError(
                    f"{records.where(i)}: label {v!r} is not a choice index; give the gold choice's position, "
                    f"0 to {counts[i] - 1}"
                )
            if not 0 <= index < counts[i]:
                raise HftkError(
                    f"{records.where(i)}: label {index} is out of range: {counts[i]} choices, so 0 to "
                    f"{counts[i] - 1} (the first choice is 0); fix the row"
                )
            out.append(index)
        return out

    def _pairs(self, records: Records) -> tuple[list[str], list[str], int]:
        """(question, choice) for every choice of every row, row by row, and the number of choices per row."""
        questions = self.texts(records, "question")
        choices = self.choices(records)
        n = len(choices[0]) if choices else 0
        return [q for q in questions for _ in range(n)], [c for row in choices for c in row], n

    def encode(self, records: Records, *, with_targets: bool) -> Features:
        firsts, seconds, n = self._pairs(records)
        flat = self.tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_length)
        features = {k: [v[i : i + n] for i in range(0, len(v), n or 1)] for k, v in flat.items()}
        if with_targets:
            features["labels"] = self.targets(records)
        return features

    def lengths(self, split: Split) -> list[int]:
        """Each row's longest (question, choice) pair in tokens, untruncated."""
        out: list[int] = []
        for part in split.batches():
            firsts, seconds, n = self._pairs(part)
            ids = self.tokenizer(firsts, seconds)["input_ids"]
            out.extend(max(len(x) for x in ids[i : i + n]) for i in range(0, len(ids), n or 1))
        return out

    def summary(self, split: Split) -> dict[str, Any]:
        records = split.whole()
        choices = self.choices(records)
        info: dict[str, Any] = {"choices per row": len(choices[0]) if choices else 0}
        if self.has_role(records, "label"):
            gold = Counter(self.targets(records))
            info["gold index"] = {i: gold[i] for i in sorted(gold)}  # a skewed position is a shortcut to learn
        return info

    # -- model -----------------------------------------------------------------------------------------
    def auto_model(self) -> Any:
        from transformers import AutoModelForMultipleChoice

        return AutoModelForMultipleChoice

    def collator(self, pad_to_multiple_of: int | None = None) -> Any:
        from transformers import DataCollatorForMultipleChoice

        return DataCollatorForMultipleChoice(self.tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    # -- outputs ---------------------------------------------------------------------------------------
    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        predicted = np.stack(outputs).argmax(-1)
        return {"accuracy": float((predicted == np.asarray(features["labels"])).mean())}

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        gold = np.asarray(features["labels"])
        inputs = functools.partial(self.shown_input, records)
        return choice_sections([_softmax(o) for o in outputs], gold, self.choices(records), inputs)

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        """{"answer": the chosen choice's text, "index": its position, "scores": a softmax over the row's choices}."""
        out = []
        for row, logits in zip(self.choices(records), outputs):
            p = _softmax(logits)
            best = int(p.argmax())
            out.append({"answer": row[best], "index": best, "scores": [float(x) for x in p]})
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    """A row's scores over its choices (the answer's `scores`, and the report's)."""
    p = np.exp(logits - logits.max())
    return p / p.sum()
