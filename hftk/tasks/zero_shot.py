"""Zero-shot classification with any NLI model: each candidate label becomes a hypothesis about the text.

The scores are those of transformers' zero-shot pipeline: the entailment logit of each (text, hypothesis) pair,
softmaxed over the labels, or with `multi_label`, entailment against contradiction for each label on its own.
Japanese models take a Japanese template, e.g. `この文は{}に関する内容です。`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from hftk.config.recipe import LabelMap, Recipe
from hftk.data.records import Records
from hftk.errors import HftkError
from hftk.tasks.base import Features, Task


class ZeroShotRecipe(Recipe):
    task: Literal["zero-shot-classification"]
    candidate_labels: list[str] = Field(default_factory=list)
    hypothesis_template: str = "This example is {}."
    multi_label: bool = False
    # Scoring a labelled file: data value -> candidate label, e.g. {0: negative, 1: positive} for SST-2.
    labels: LabelMap = None

    @field_validator("hypothesis_template")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if "{}" not in v:
            raise ValueError("must contain {} where the label goes, e.g. 'This example is {}.'")
        return v

    @field_validator("candidate_labels", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class ZeroShotClassification(Task):
    name = "zero-shot-classification"
    pipeline_task = "zero-shot-classification"
    recipe_class = ZeroShotRecipe
    input_roles = ("text",)
    target_roles = ("label",)
    trainable = False
    recipe: ZeroShotRecipe

    def __init__(self, recipe: ZeroShotRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.entailment = self.contradiction = -1

    @classmethod
    def from_trained(cls, recipe: ZeroShotRecipe, tokenizer: Any, config: Any) -> ZeroShotClassification:
        task = cls(recipe, tokenizer)
        # id2label, which every classification config has (label2id may be left unset beside it).
        by_prefix = {name.lower()[:6]: int(i) for i, name in (config.id2label or {}).items()}
        if "entail" not in by_prefix:
            names = ", ".join((config.id2label or {}).values())
            raise HftkError(
                f"{recipe.model}: its labels ({names}) have no 'entailment'; zero-shot classification needs an "
                "NLI model (train one on sentence pairs with labels entailment/neutral/contradiction)"
            )
        task.entailment = by_prefix["entail"]
        task.contradiction = by_prefix.get("contra", -1 if task.entailment == 0 else 0)
        return task

    def encode(self, records: Records, *, with_targets: bool) -> Features:
        labels = self.recipe.candidate_labels
        if not labels:
            raise HftkError("zero-shot classification needs candidate labels: --labels a,b,c (or candidate_labels:)")
        texts = self.texts(records, "text")
        hypotheses = [self.recipe.hypothesis_template.format(label) for label in labels]
        pairs = [(t, h) for t in texts for h in hypotheses]
        features = dict(
            self.tokenizer(
                [p[0] for p in pairs], [p[1] for p in pairs], truncation="only_first", max_length=self.max_length
            )
        )
        features["example"] = [i for i in range(len(texts)) for _ in labels]
        return features

    def auto_model(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        labels = self.recipe.candidate_labels
        logits = np.stack(outputs).reshape(len(records), len(labels), -1).astype(np.float64)
        if self.recipe.multi_label or len(labels) == 1:
            pair = logits[..., [self.contradiction, self.entailment]]
            scores = np.exp(pair[..., 1]) / np.exp(pair).sum(-1)
        else:
            entail = logits[..., self.entailment]
            scores = np.exp(entail - entail.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
        out = []
        for row in scores:
            order = np.argsort(-row, kind="stable")
            out.append({"labels": [labels[j] for j in order], "scores": [float(row[j]) for j in order]})
        return out

    def targets(self, records: Records) -> list[str]:
        """The candidate label of each row's `label` value (mapped through the recipe's `labels:`)."""
        names = self.recipe.labels or {}
        gold = [names.get(str(v), str(v)) for v in self.column(records, "label")]
        for i, g in enumerate(gold):
            if g not in self.recipe.candidate_labels:
                raise HftkError(
                    f"{records.where(i)}: label {g!r} is not a candidate label "
                    f"({', '.join(self.recipe.candidate_labels)}); map the data's values to them in the "
                    "recipe (labels: {value: candidate}, e.g. --set 'labels={0: negative, 1: positive}')"
                )
        return gold

    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        """Accuracy of the top label against a `label` column (values among the candidate labels)."""
        gold = self.targets(records)
        top = [p["labels"][0] for p in self.postprocess(records, features, outputs)]
        return {"accuracy": float(np.mean([t == g for t, g in zip(top, gold)]))}
