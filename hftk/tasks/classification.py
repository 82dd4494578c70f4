"""Sequence classification: single-label, sentence-pair, multi-label and regression."""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import Counter
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import field_validator, model_validator

from hftk.config.recipe import Labels
from hftk.data.readers import RowStream
from hftk.data.records import SCALARS, Records, Split, not_one_value
from hftk.errors import HftkError
from hftk.report import Section, labels
from hftk.tasks import documents, imbalance, metrics
from hftk.tasks.base import Features, Task
from hftk.tasks.documents import LongInputsRecipe

logger = logging.getLogger("hftk")

_PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}


class ClassificationRecipe(LongInputsRecipe):
    task: Literal["text-classification"]
    streams = True  # rows are encoded on the fly from a RowStream (features.streamed_dataset)
    # An input longer than the window keeps its head and tail: at truncation's cost, 5 to 6 accuracy points more
    # on long IMDb reviews at 128 and 256 tokens (bench/RESULTS.md); inputs that fit are read whole either way.
    long_inputs: Literal["truncate", "head_tail", "windows"] = "head_tail"
    problem_type: Literal["single_label", "multi_label", "regression"] = "single_label"
    # Label order (list), or data value -> name (mapping, e.g. {0: negative, 1: positive}). Default: the
    # sorted labels seen in train.
    labels: Labels = None
    # Multi-label decision threshold on sigmoid scores: one number for every label, or `tuned`: chosen after
    # training on the validation outputs to maximise F1 and saved with the model (config.json hftk_thresholds).
    threshold: float | Literal["tuned"] = 0.5
    # How `threshold: tuned` chooses: each label's own F1 (per_label), or one threshold for micro-F1 (global).
    threshold_tuning: Literal["per_label", "global"] = "per_label"
    # balanced (scikit-learn's, from train's label counts) or {label: weight}: a weighted loss for rare classes.
    class_weights: imbalance.ClassWeights = None

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if v == "tuned" or (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1):
            return v
        raise ValueError("must be a number between 0 and 1 (exclusive), or tuned")

    @model_validator(mode="after")
    def _imbalance_fits(self) -> ClassificationRecipe:
        if self.class_weights is not None and self.problem_type == "regression":
            raise ValueError("class_weights: regression has no classes to weight; remove class_weights")
        if self.threshold == "tuned" and self.problem_type != "multi_label":
            raise ValueError(f"threshold: tuned is for multi_label models; {self.problem_type} takes none, remove it")
        if self.threshold == "tuned" and self.data.validation is None and self.data.validation_fraction is None:
            raise ValueError(
                "threshold: tuned chooses the thresholds on the validation split; give data.validation (or "
                "data.validation_fraction), or a number"
            )
        if self.data.streaming and self.data.validation_fraction is not None:
            raise ValueError(
                "data.validation_fraction: a streamed train split is read pass by pass, never held whole, so no share "
                "of it can be drawn; name a validation file (data.validation) or remove data.streaming"
            )
        names = list(self.labels.values()) if isinstance(self.labels, dict) else self.labels
        if names and (unknown := imbalance.unknown_names(self.class_weights, names)):
            raise ValueError(imbalance.unknown_message(unknown[0], names))
        return self


class Classification(Task):
    name = "text-classification"
    pipeline_task = "text-classification"
    recipe_class = ClassificationRecipe
    input_roles = ("text",)
    optional_roles = ("text_pair",)
    target_roles = ("label",)
    recipe: ClassificationRecipe

    peft_task_type = "SEQ_CLS"
    _MAIN: ClassVar[dict[str, str]] = {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "pearson"}

    def __init__(self, recipe: ClassificationRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.problem = recipe.problem_type
        # data value -> label id, and id -> display name
        self.value_to_id: dict[str, int] = {}
        self.names: list[str] = []
        self.pairs = False  # trained on sentence pairs (fit, or the trained model's config)
        self.weights: list[float] | None = None  # loss weights by label id (fit, from class_weights)
        self.thresholds: list[float] | None = None  # multi-label thresholds by label id (tune, or the config)
        if isinstance(recipe.labels, dict):
            self.value_to_id = {v: i for i, v in enumerate(recipe.labels)}
            self.names = list(recipe.labels.values())
        elif isinstance(recipe.labels, list):
            self.value_to_id = {v: i for i, v in enumerate(recipe.labels)}
            self.names = list(recipe.labels)
        documents.check_fits(recipe, self.max_length, tokenizer.num_special_tokens_to_add() if tokenizer else 2)

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return self._MAIN[self.problem]

    # -- data ------------------------------------------------------------------------------------------
    def read(self, path: Any) -> Split:
        if self.recipe.data.streaming:  # read pass by pass; only evaluation splits are ever held (they are small)
            return RowStream(path, column_names=self.recipe.data.column_names)
        return super().read(path)

    def learnt_fields(self) -> dict[str, Any]:
        if self.problem == "regression" or self.recipe.labels:
            return {}
        return {"labels": list(self.value_to_id)}  # learnt labels: the data values, in the order learnt

    def fold_strata(self, records: Records) -> list[str] | None:
        # Multi-label rows have several labels, so no one class to keep the share of; regression has none.
        if self.problem != "single_label":
            return None
        # The data's values (read before fit learns the labels), named as the recipe's labels: mapping names them.
        named = {str(k): v for k, v in self.recipe.labels.items()} if isinstance(self.recipe.labels, dict) else {}
        return [named.get(values[0], values[0]) for values in self._raw_labels(records)]

    def fit(self, train: Split) -> None:
        """Learn the labels (and class weights), checking every row on the way (its texts, its labels) a batch at a
        time: a streamed split is never held, and a bad row stops the run before weights load, not hours into
        training."""
        self.pairs = self.has_role(train, "text_pair")
        learn = self.problem != "regression" and not self.names
        count = learn or self.recipe.class_weights == "balanced"
        seen: Counter[str] = Counter()  # label value -> rows that carry it
        rows = 0
        first: dict[str, tuple[str, str]] = {}  # casefolded label -> (its first spelling, where)
        for part in train.batches():
            self.texts(part, "text")
            if self.pairs:
                self.texts(part, "text_pair")
            if learn:
                raw = self._raw_labels(part)
                _one_spelling(part, raw, first)
            else:
                self.targets(part)
                raw = self._raw_labels(part) if count else []
            seen.update(v for values in raw for v in set(values))
            rows += len(part)
        if learn:
            ordered = sorted(seen, key=_natural_key)
            self.value_to_id = {v: i for i, v in enumerate(ordered)}
            self.names = ordered
            if self.problem == "single_label" and len(ordered) < 2:
                raise HftkError(f"{train.source}: only one label ({ordered[0]!r}) in train; a classifier needs two")
        self.weights = self._class_weights(seen, rows)

    def _class_weights(self, seen: Counter[str], rows: int) -> list[float] | None:
        setting = self.recipe.class_weights
        if setting is None:
            return None
        if setting != "balanced":
            if unknown := imbalance.unknown_names(setting, self.names):
                raise HftkError(f"recipe: {imbalance.unknown_message(unknown[0], self.names)}")
            return imbalance.named(setting, self.names).tolist()
        counts = np.zeros(len(self.names))
        for value, n in seen.items():
            counts[self.value_to_id[value]] += n
        if self.problem == "multi_label":
            return imbalance.pos_weights(counts, rows).tolist()
        return imbalance.balanced(counts).tolist()

    def loss_weights(self) -> np.ndarray | None:
        return None if self.weights is None else np.asarray(self.weights)

    def document_loss(self) -> str | None:
        windows = self.recipe.windows
        return windows.pooling if self.recipe.long_inputs == "windows" and windows.loss == "document" else None

    def learnt(self) -> dict[str, Any]:
        out = {}
        if self.weights is not None:
            out["class_weights"] = {n: round(w, 6) for n, w in zip(self.names, self.weights)}
        if self.thresholds is not None:
            out["thresholds"] = {n: round(t, 6) for n, t in zip(self.names, self.thresholds)}
        return out

    def card_lines(self, section: str) -> list[str]:
        multi = self.problem == "multi_label"
        if section == "training":
            weights = imbalance.weights_card(
                self.recipe.class_weights, self.learnt().get("class_weights"), multi_label=multi
            )
            return weights + documents.card_note(self.recipe, self.max_length)
        out = super().card_lines(section)
        if section != "labels" or not out or not multi or self.recipe.threshold is None:
            return out
        return out + imbalance.thresholds_card(
            self.recipe.threshold, self.recipe.threshold_tuning, self.learnt().get("thresholds")
        )

    def example_input(self) -> dict[str, Any]:
        if not getattr(self, "pairs", False):
            return super().example_input()
        return {"text": "A man is playing a guitar.", "text_pair": "A person is playing an instrument."}

    def pipeline_example(self) -> tuple[str, str]:
        # Multi-label: the pipeline's default (a softmax top-1) would hide labels; top_k=None gives every label's
        # sigmoid score. A pair goes in as the dict the pipeline takes ({"text", "text_pair"}).
        value = repr(self.example_input()) if getattr(self, "pairs", False) else super().pipeline_example()[1]
        return "", value + (", top_k=None" if self.problem == "multi_label" else "")

    def tuned_on_validation(self) -> str | None:
        return "Multi-label thresholds" if self.recipe.threshold == "tuned" else None

    def encode(self, records: Records, *, with_targets: bool) -> dict[str, list[Any]]:
        texts = self.texts(records, "text")
        pairs = self.texts(records, "text_pair") if self.has_role(records, "text_pair") else None
        if pairs is None and self.pairs and not with_targets:
            logger.warning(
                "hftk: the model was trained on sentence pairs, but %s has no %r column: it sees single texts, and "
                "its answers may mean little; give the second sentence (data.columns.text_pair)",
                records.source,
                self.recipe.data.column("text_pair"),
            )
        features = documents.encode(self.tokenizer, texts, pairs, self.max_length, self.recipe)
        if with_targets:
            labels = self.targets(records)
            features["labels"] = [labels[i] for i in features["example"]] if "example" in features else labels
        return features

    def lengths(self, split: Split) -> list[int]:
        pairs = self.has_role(split, "text_pair")
        out: list[int] = []
        for part in split.batches():
            second = self.texts(part, "text_pair") if pairs else None
            out.extend(len(x) for x in self.tokenizer(self.texts(part, "text"), second)["input_ids"])
        return out

    def check_lengths(self, lengths: np.ndarray) -> tuple[str | None, dict[str, Any]]:
        return documents.report(self.recipe, lengths, self.max_length)

    def summary(self, split: Split) -> dict[str, Any]:
        if not self.has_role(split, "label"):
            return {}
        if self.problem == "regression":
            y = np.concatenate([np.asarray(self.targets(part), dtype=float) for part in split.batches()])
            return {"label range": f"{y.min():g} .. {y.max():g} (mean {y.mean():.3g})"}
        counts = Counter(v for part in split.batches() for values in self._raw_labels(part) for v in values)
        return {"labels": {self._name_of(v): counts[v] for v in sorted(counts, key=_natural_key)}}

    def _raw_labels(self, records: Records) -> list[list[str]]:
        """Each row's label values as strings: one per row, or several for multi-label."""
        values = self.column(records, "label")
        column = self.recipe.data.column("label")
        multi = self.problem == "multi_label"
        for i, v in enumerate(values):
            items = v if isinstance(v, list) and multi else [v]
            if not all(isinstance(x, SCALARS) for x in items):  # a struct would become class "{'v': 'neg'}"
                several = " (several labels per row: problem_type: multi_label)" if isinstance(v, list) else ""
                raise not_one_value(
                    records.where(i),
                    column,
                    v,
                    "multi-label labels are a flat list of values (text, numbers or true/false)"
                    if multi
                    else "a label is one value (text, a number or true/false)",
                    "store the label values themselves (flatten the nested column), or point data.columns.label "
                    "at a column that holds them" + ("" if multi else several),
                )
            if any(isinstance(x, float) and not math.isfinite(x) for x in items):  # a NaN would become class 'nan'
                raise HftkError(f"{records.where(i)}: label {v!r} is not a finite number; fix the row")
        if not multi:
            out = [[str(v)] for v in values]
            for i, (v,) in enumerate(out):
                if not v.strip():
                    raise HftkError(f"{records.where(i)}: the label is empty; fill it or drop the row")
            return out
        delim = self.recipe.data.label_delimiter
        out = []
        for i, v in enumerate(values):
            if isinstance(v, list):
                out.append([str(x) for x in v])
            elif isinstance(v, str) and delim:
                out.append([x.strip() for x in v.split(delim) if x.strip()])
            else:
                raise HftkError(
                    f"{records.where(i)}: a multi-label label is a list or a delimited string, got {v!r}; "
                    "set data.label_delimiter (e.g. ',') or store a list"
                )
        return out

    def targets(self, records: Records) -> list[Any]:
        if self.problem == "regression":
            out = []
            for i, v in enumerate(self.column(records, "label")):
                try:
                    y = float(v)
                except (TypeError, ValueError):
                    raise HftkError(f"{records.where(i)}: regression label {v!r} is not a number") from None
                if not math.isfinite(y):  # NaN/inf train to a NaN loss and a model that predicts NaN
                    raise HftkError(f"{records.where(i)}: regression label {v!r} is not a finite number; fix the row")
                out.append(y)
            return out
        raw = self._raw_labels(records)
        for i, values in enumerate(raw):
            for v in values:
                if v not in self.value_to_id:
                    known = ", ".join(list(self.value_to_id)[:10])
                    raise HftkError(
                        f"{records.where(i)}: label {v!r} is not among the training labels ({known}); "
                        "fix the row or list it under labels: in the recipe"
                    )
        if self.problem == "single_label":
            return [self.value_to_id[values[0]] for values in raw]
        multi_hot = np.zeros((len(raw), len(self.names)), dtype=np.float32)
        for i, values in enumerate(raw):
            multi_hot[i, [self.value_to_id[v] for v in values]] = 1.0
        return multi_hot.tolist()

    def _name_of(self, value: str) -> str:
        i = self.value_to_id.get(value)
        return self.names[i] if i is not None else value

    # -- model -----------------------------------------------------------------------------------------
    def auto_model(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def config_fields(self) -> dict[str, Any]:
        # Saved in config.json, so prediction knows the model expects pairs and the tuned thresholds (pipeline()
        # ignores both keys).
        fields: dict[str, Any] = {"hftk_text_pair": True} if self.pairs else {}
        if self.thresholds is not None:
            fields["hftk_thresholds"] = dict(zip(self.names, self.thresholds))
        return fields

    def model_kwargs(self) -> dict[str, Any]:
        if self.problem == "regression":
            return {"num_labels": 1, "problem_type": "regression"}
        return {
            "num_labels": len(self.names),
            "id2label": dict(enumerate(self.names)),
            "label2id": {n: i for i, n in enumerate(self.names)},
            "problem_type": _PROBLEM_TYPES[self.problem],
        }

    @classmethod
    def from_trained(cls, recipe: ClassificationRecipe, tokenizer: Any, config: Any) -> Classification:
        task = cls(recipe, tokenizer)
        task.pairs = bool(getattr(config, "hftk_text_pair", False))
        if task.problem != "regression":
            task.names = [config.id2label[i] for i in range(config.num_labels)]
            # Trained labels are stored by display name; data files may hold the raw values instead.
            raw = recipe.labels if isinstance(recipe.labels, dict) else {}
            task.value_to_id = {**{n: i for i, n in enumerate(task.names)}, **{v: i for i, v in enumerate(raw)}}
        tuned = getattr(config, "hftk_thresholds", None)
        if recipe.threshold == "tuned" and isinstance(tuned, dict):  # a number in the recipe (--set) wins
            task.thresholds = [float(tuned.get(n, imbalance.DEFAULT_THRESHOLD)) for n in task.names]
        return task

    def disagreement(self, config: Any) -> str | None:
        kind = getattr(config, "problem_type", None)
        if kind and kind != _PROBLEM_TYPES[self.problem]:
            return f"recipe.yaml says problem_type {self.problem} but config.json {kind}"
        return None

    # -- outputs ---------------------------------------------------------------------------------------
    def metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        if self.problem == "regression":
            return metrics.regression(predictions.reshape(-1), labels.reshape(-1))
        if self.problem == "multi_label":
            return metrics.multi_label(_sigmoid(predictions) >= self.cutoffs(), labels > 0.5)
        return metrics.single_label(predictions.argmax(-1), labels, num_labels=len(self.names))

    def cutoffs(self) -> np.ndarray:
        """Each label's multi-label threshold: tuned, else the recipe's number (0.5 until `threshold: tuned` is)."""
        if self.thresholds is not None:
            return np.asarray(self.thresholds)
        threshold = self.recipe.threshold
        return np.full(len(self.names), imbalance.DEFAULT_THRESHOLD if threshold == "tuned" else threshold)

    def tune(self, records: Records, features: Features, outputs: list[Any]) -> None:
        if self.problem != "multi_label" or self.recipe.threshold != "tuned":
            return
        probs, gold = _sigmoid(self.pooled(features, outputs)), np.asarray(self.gold(features)) > 0.5
        per_label = self.recipe.threshold_tuning == "per_label"
        self.thresholds = imbalance.tune_thresholds(probs, gold, per_label=per_label).tolist()

    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        return self.metrics(self.pooled(features, outputs), np.asarray(self.gold(features)))

    def pooled(self, features: Features, outputs: list[Any]) -> np.ndarray:
        """One row of logits per document: its windows' pooled (`windows.pooling`), or its one feature's."""
        return documents.pool(features, outputs, self.recipe.windows.pooling)

    def gold(self, features: Features) -> list[Any]:
        return documents.per_document(features, "labels")

    def postprocess(
        self,
        records: Records,
        features: Features,
        outputs: list[Any],
        *,
        top_k: int | None = None,
        windows: bool = False,
        **_: Any,
    ) -> list[dict]:
        rows = self.decode(self.pooled(features, outputs), top_k)
        if windows:  # each window's own answer too, in the document's order (one window: the input as read)
            for e, answer in zip(features.get("example", range(len(outputs))), self.decode(np.stack(outputs))):
                rows[e].setdefault("windows", []).append(answer)
        return rows

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        logits = self.pooled(features, outputs)
        gold = np.asarray(self.gold(features))
        lengths = np.asarray(self.lengths(records))  # whole inputs, not what the window kept
        inputs = functools.partial(self.shown_input, records)
        if self.problem == "regression":
            return labels.regression(gold.astype(float), logits.reshape(-1), lengths, self.max_length, inputs)
        if self.problem == "multi_label":
            probs = _sigmoid(logits)
            return labels.multi_label(self.names, gold, probs, self.cutoffs(), lengths, self.max_length, inputs)
        return labels.single_label(self.names, gold, _softmax(logits), lengths, self.max_length, inputs)

    def decode(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        if self.problem == "regression":
            return [{"score": float(v)} for v in outputs.reshape(-1)]
        probs = _sigmoid(outputs) if self.problem == "multi_label" else _softmax(outputs)
        order = np.argsort(-probs, axis=-1, kind="stable")
        k = len(self.names) if top_k is None else min(top_k, len(self.names))
        cutoffs = self.cutoffs() if self.problem == "multi_label" else None
        out = []
        for p, idx in zip(probs, order):
            ranked = [{"label": self.names[j], "score": float(p[j])} for j in idx[:k]]
            if self.problem == "multi_label":
                chosen = [self.names[j] for j in idx if p[j] >= cutoffs[j]]
                out.append({"labels": chosen, "scores": ranked})
            else:
                row = {"label": self.names[idx[0]], "score": float(p[idx[0]])}
                if top_k is not None:
                    row["top_k"] = ranked
                out.append(row)
        return out


def _one_spelling(part: Records, raw: list[list[str]], first: dict[str, tuple[str, str]]) -> None:
    """Labels that differ only in case or surrounding spaces ('pos', 'Pos', 'pos ') are one label mistyped:
    as classes of their own they split its examples silently. A recipe that lists them under labels: keeps them.
    `first` carries each label's first spelling and place from the batches before this one."""
    for i, values in enumerate(raw):
        for v in values:
            key = v.strip().casefold()
            if key not in first:
                first[key] = (v, part.where(i))
            elif first[key][0] != v:
                raise HftkError(
                    f"{part.where(i)}: label {v!r} differs from {first[key][0]!r} ({first[key][1]}) "
                    "only in case or spaces; write one label the same way everywhere, or list both under labels:"
                )


def _natural_key(v: str) -> tuple[int, float, str]:
    """Numbers in numeric order, before words in alphabetical order: 2 < 10 < 'neg' < 'pos'."""
    return (0, float(v), "") if re.fullmatch(r"-?\d+(\.\d+)?", v) else (1, 0.0, v)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Multi-label scores: one sigmoid for decoding, metrics and tuning, so each sees the same numbers."""
    return 1.0 / (1.0 + np.exp(-logits))
