"""Token classification (NER): CoNLL columns, character-span JSON or token/tag lists -> entity spans.

Every input becomes text plus character spans, and token labels come from the tokenizer's offsets, so English
WordPiece and hftk's fast Japanese tokenizer work alike and predictions point into the user's own text. Inputs
longer than max_length are split into overlapping windows (never truncated away) and merged back token by token,
each token taken from the window where it has the most context on both sides.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from hftk.config.recipe import DataConfig, Recipe
from hftk.data.conll import read_conll
from hftk.data.records import SCALARS, Records, Split, not_one_value
from hftk.errors import HftkError
from hftk.report import Section
from hftk.report.spans import Sentence, entity_sections
from hftk.tasks import imbalance, metrics
from hftk.tasks.base import Features, Task
from hftk.tasks.tags import (
    CONLL_SUFFIXES,
    FORMS,
    Example,
    TagError,
    entity_of,
    from_spans,
    group_tags,
    label_names,
    tags_to_spans,
    token_where,
    unit_tags,
    unknown_type,
)
from hftk.tasks.windows import Tokens, input_windows, merge_windows, record_tokens, word_runs

Scheme = Literal["IOB2", "IOB1", "BIOES"]


class TokenDataConfig(DataConfig):
    tag_column: int = -1  # CoNLL: the whitespace-separated column holding the tag (default: the last)


class TokenClassificationRecipe(Recipe):
    task: Literal["token-classification"]
    data: TokenDataConfig
    # Entity types in label order (default: the types seen in train, sorted).
    labels: list[str] | None = None
    # Names of integer tags, for data that stores tags as numbers (`datasets` ClassLabel columns).
    tag_names: list[str] | None = None
    # The tags of CoNLL/tag-list data, and the labels the model learns. transformers' pipeline groups B-/I- tags;
    # BIOES models group correctly in hftk predict only.
    scheme: Scheme = "IOB2"
    # Label every sub-token of a word (so pipeline's "simple" grouping sees trained predictions everywhere), or
    # only the first one (the CoNLL-style evaluation of transformers' run_ner example).
    label_all_subtokens: bool = True
    stride: int = Field(default=32, ge=0)  # tokens shared by consecutive windows of a long input
    aggregation: Literal["none", "simple", "first", "average", "max"] = "simple"  # hftk predict's default
    # balanced (scikit-learn's, from the tags of train's labelled tokens) or {type or tag: weight}, e.g.
    # {MISC: 2} (its B- and I- tags) or {O: 0.5}: a weighted cross-entropy for rare tags.
    class_weights: imbalance.ClassWeights = None

    @model_validator(mode="after")
    def _stride_below_window(self) -> TokenClassificationRecipe:
        if self.max_length is not None and self.stride >= self.max_length - 2:
            raise ValueError(f"stride {self.stride} must be smaller than max_length - 2 ({self.max_length - 2})")
        if self.labels and (unknown := imbalance.unknown_names(self.class_weights, _weight_names(self))):
            raise ValueError(imbalance.unknown_message(unknown[0], _weight_names(self)))
        return self


class TokenClassification(Task):
    name = "token-classification"
    pipeline_task = "token-classification"
    recipe_class = TokenClassificationRecipe
    input_roles = ("text",)
    optional_roles = ("tokens",)
    target_roles = ("entities",)  # or `tags` alongside `tokens`
    main_metric = "f1"
    token_level = True
    last_tagged: tuple[list[Any], list[_Tagged]] | None = None  # the last outputs scored, and their tags
    windowed = True
    peft_task_type = "TOKEN_CLS"
    example_file = "train.jsonl"
    # bf16 autocast kept 98.3 % of a CoNLL model's entity spans (bench/precision.py), short of the 99.5 % asked
    # of it: `precision: auto` stays fp32 on CPU (--precision bf16 opts in; CUDA is unaffected).
    cpu_bf16 = False
    recipe: TokenClassificationRecipe

    def __init__(self, recipe: TokenClassificationRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.types: list[str] = list(recipe.labels or [])
        self.names: list[str] = label_names(self.types, recipe.scheme)
        self.weights: list[float] | None = None  # loss weights by tag id (fit, from class_weights)

    # -- data ------------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Split:
        if Path(path).suffix.lower() in CONLL_SUFFIXES:
            data = self.recipe.data
            return read_conll(path, tag_column=data.tag_column, tokens=data.column("tokens"), tags=data.column("tags"))
        return super().read(path)

    def has_targets(self, records: Split) -> bool:
        role = "tags" if self.has_role(records, "tokens") else "entities"
        return self.has_role(records, role)

    def learnt_fields(self) -> dict[str, Any]:
        return {} if self.recipe.labels else {"labels": list(self.types)}

    def fit(self, train: Split) -> None:
        records = train.whole()
        if not self.recipe.labels:
            seen = {t for ex in self._examples(records, with_targets=True, check_types=False) for *_, t in ex.spans}
            if not seen:
                raise HftkError(f"{train.source}: no entities in train; a NER model needs labelled examples")
            self.types = sorted(seen)
            self.names = label_names(self.types, self.recipe.scheme)
        self.weights = self._class_weights(records)

    def card_lines(self, section: str) -> list[str]:
        if section == "training":
            return imbalance.weights_card(
                self.recipe.class_weights, self.learnt().get("class_weights"), multi_label=False
            )
        return super().card_lines(section)

    def example_input(self) -> dict[str, Any]:
        return {"text": "George Washington went to Washington to meet the Red Cross."}

    def pipeline_example(self) -> tuple[str, str]:
        # "simple" joins sub-tokens and B-/I- tags into whole entities, as `hftk predict` answers.
        return ', aggregation_strategy="simple"', repr(self.example_input()["text"])

    def _class_weights(self, train: Records) -> list[float] | None:
        setting = self.recipe.class_weights
        if setting is None or (setting == "balanced" and self.tokenizer is None):  # hftk check without tokenizer
            return None
        if setting == "balanced":
            return imbalance.balanced(self._tag_counts(train)).tolist()
        known = [*self.types, *self.names]
        if unknown := imbalance.unknown_names(setting, known):
            raise HftkError(f"recipe: {imbalance.unknown_message(unknown[0], known)}")
        return imbalance.named(setting, self.names, {n: n.split("-", 1)[-1] for n in self.names}).tolist()

    def _tag_counts(self, records: Records) -> np.ndarray:
        """How many labelled tokens carry each tag, each token once (not once per window that repeats it)."""
        counts = np.zeros(len(self.names))
        for part in records.batches():
            examples = self._examples(part, with_targets=True)
            enc = self._tokenize(examples)
            for ex, windows in zip(examples, input_windows(enc, self.recipe.stride)):
                labels = np.asarray(self._label_ids(*record_tokens(enc, windows, ex.word_starts), ex.spans))
                counts += np.bincount(labels[labels >= 0], minlength=len(self.names))
        return counts

    def loss_weights(self) -> np.ndarray | None:
        return None if self.weights is None else np.asarray(self.weights)

    def learnt(self) -> dict[str, Any]:
        if self.weights is None:
            return {}
        return {"class_weights": {n: round(w, 6) for n, w in zip(self.names, self.weights)}}

    def targets(self, records: Records) -> list[list[tuple[int, int, str]]]:
        return [ex.spans for ex in self._examples(records, with_targets=True)]

    def summary(self, split: Split) -> dict[str, Any]:
        if not self.has_targets(split):
            return {}
        records = split.whole()
        counts = Counter(t for ex in self._examples(records, with_targets=True) for *_, t in ex.spans)
        return {"labels": dict(sorted(counts.items()))}

    def lengths(self, split: Split) -> list[int]:
        texts = [ex.text for ex in self._examples(split.whole(), with_targets=False)]
        return [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]

    def _examples(self, records: Records, *, with_targets: bool, check_types: bool = True) -> list[Example]:
        """Records -> text and character spans, from either tokens + tags or text + entities; all checked."""
        known = set(self.types) if check_types else None
        if self.has_role(records, "tokens"):
            token_lists = self.column(records, "tokens")
            tag_lists = self.column(records, "tags") if with_targets else [None] * len(records)
            return [
                self._from_tokens(records, i, tokens, tags, known)
                for i, (tokens, tags) in enumerate(zip(token_lists, tag_lists))
            ]
        texts = self.texts(records, "text")
        entity_lists = self.column(records, "entities") if with_targets else [[]] * len(records)
        return [from_spans(records, i, t, e, known) for i, (t, e) in enumerate(zip(texts, entity_lists))]

    def _from_tokens(self, records: Records, i: int, tokens: Any, tags: Any, known: set[str] | None) -> Example:
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise HftkError(f"{records.where(i)}: tokens must be a list of non-empty strings, got {tokens!r}")
        starts, pos = [], 0
        for token in tokens:
            starts.append(pos)
            pos += len(token) + 1
        text = " ".join(tokens)
        if tags is None:
            return Example(text, [], starts)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            n = len(tags) if isinstance(tags, list) else type(tags).__name__
            raise HftkError(f"{records.where(i)}: {len(tokens)} tokens but {n} tags; give one tag per token")
        tags = [self._tag_name(records, i, j, t) for j, t in enumerate(tags)]
        try:
            word_spans = tags_to_spans(tags, self.recipe.scheme)
        except TagError as e:
            raise HftkError(
                f"{token_where(records, i, e.index)}: tag {e.tag!r} is not {self.recipe.scheme} "
                f"({FORMS[self.recipe.scheme]}); fix it or set scheme: in the recipe"
            ) from None
        spans = []
        for a, b, typ in word_spans:
            if known is not None and typ not in known:
                raise unknown_type(token_where(records, i, a), typ, self.types)
            spans.append((starts[a], starts[b - 1] + len(tokens[b - 1]), typ))
        return Example(text, spans, starts)

    def _tag_name(self, records: Records, i: int, j: int, tag: Any) -> str:
        if isinstance(tag, str):
            return tag
        if not isinstance(tag, SCALARS):  # tags nested one level too deep (a list of lists, structs)
            raise not_one_value(
                token_where(records, i, j),
                self.recipe.data.column("tags"),
                tag,
                "tags are a flat list, one tag per token",
                "store one tag name (or number, with tag_names:) per token",
            )
        names = self.recipe.tag_names
        if isinstance(tag, int) and not isinstance(tag, bool) and names and 0 <= tag < len(names):
            return names[tag]
        raise HftkError(
            f"{token_where(records, i, j)}: tag {tag!r} is a number without a name; "
            "list the tag names in order under tag_names: in the recipe"
        )

    # -- features --------------------------------------------------------------------------------------
    def encode(self, records: Records, *, with_targets: bool) -> Features:
        examples = self._examples(records, with_targets=with_targets)
        enc = self._tokenize(examples)
        model_inputs = [k for k in self.tokenizer.model_input_names if k in enc]
        columns = ("example", "window_start", "offset_mapping", "special_tokens_mask", "word_ids")
        features: Features = {k: [] for k in (*model_inputs, *columns)}
        if with_targets:
            features["labels"] = []
        for i, windows in enumerate(input_windows(enc, self.recipe.stride)):
            ex = examples[i]
            offsets, word_ids = record_tokens(enc, windows, ex.word_starts)
            labels = self._label_ids(offsets, word_ids, ex.spans) if with_targets else None
            for j, start in windows:
                special = enc["special_tokens_mask"][j]
                window_words = iter(word_ids[start:])
                for k in model_inputs:
                    features[k].append(enc[k][j])
                features["example"].append(i)
                features["window_start"].append(start)
                features["offset_mapping"].append(enc["offset_mapping"][j])
                features["special_tokens_mask"].append(special)
                features["word_ids"].append([-1 if s else next(window_words) for s in special])
                if labels is not None:
                    content = iter(labels[start:])
                    features["labels"].append([-100 if s else next(content) for s in special])
        return features

    def _tokenize(self, examples: list[Example]) -> Any:
        """The texts in overlapping windows of max_length tokens, with offsets (`input_windows` reads them)."""
        return self.tokenizer(
            [ex.text for ex in examples],
            truncation=True,
            max_length=self.max_length,
            stride=self.recipe.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )

    def _units(self, word_ids: list[int]) -> list[int]:
        """Positions of the tokens that carry a label: all of them, or each word's first."""
        if self.recipe.label_all_subtokens:
            return list(range(len(word_ids)))
        return [p for p, w in enumerate(word_ids) if p == 0 or w != word_ids[p - 1]]

    def _gold_tags(self, offsets: list[tuple[int, int]], word_ids: list[int], spans) -> dict[int, str]:
        units = self._units(word_ids)
        entity = entity_of(offsets, spans)
        tags = unit_tags([entity[p] for p in units], [t for *_, t in spans], self.recipe.scheme)
        return dict(zip(units, tags))

    def _label_ids(self, offsets, word_ids, spans) -> list[int]:
        tags = self._gold_tags(offsets, word_ids, spans)
        index = {n: k for k, n in enumerate(self.names)}
        return [index[tags[p]] if p in tags else -100 for p in range(len(offsets))]

    # -- model -----------------------------------------------------------------------------------------
    def auto_model(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.names),
            "id2label": dict(enumerate(self.names)),
            "label2id": {n: i for i, n in enumerate(self.names)},
        }

    def collator(self, pad_to_multiple_of: int | None = None) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(self.tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    @classmethod
    def from_trained(cls, recipe: TokenClassificationRecipe, tokenizer: Any, config: Any) -> TokenClassification:
        task = cls(recipe, tokenizer)
        task.names = [config.id2label[i] for i in range(config.num_labels)]
        task.types = list(dict.fromkeys(n.split("-", 1)[1] for n in task.names if n != "O"))
        return task

    # -- outputs ---------------------------------------------------------------------------------------
    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        tagged = self._tagged(records, features, outputs)
        return metrics.entities([t.gold for t in tagged], [t.predicted for t in tagged], strict=self._strict)

    @property
    def _strict(self) -> bool:
        return self.recipe.scheme == "BIOES"  # seqeval's strict mode reads whole BIOES entities

    def _tagged(self, records: Records, features: Features, outputs: list[Any]) -> list[_Tagged]:
        """Each record's labelled units with their gold and predicted (argmax) tags: what the metric scores. The
        last outputs' are kept: `hftk evaluate --report` scores them, then reports on them (CoNLL's validation:
        1.3 s a pass)."""
        if self.last_tagged is not None and self.last_tagged[0] is outputs:
            return self.last_tagged[1]
        out = []
        for ex, tokens in zip(
            self._examples(records, with_targets=True), merge_windows(features, outputs, len(records))
        ):
            tags = self._gold_tags(tokens.offsets, tokens.word_ids, ex.spans)
            rows = [tokens.rows[p] for p in tags]
            predicted = [self.names[int(row.argmax())] for row in rows]
            out.append(_Tagged(ex, tokens, list(tags), list(tags.values()), predicted, [_top(r) for r in rows]))
        self.last_tagged = (outputs, out)
        return out

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        tagged = self._tagged(records, features, outputs)
        counts = metrics.entity_counts([t.gold for t in tagged], [t.predicted for t in tagged], strict=self._strict)
        per_type = metrics.entity_report(counts)
        sentences = [
            Sentence(
                t.example.text,
                [t.char_span(a, b, typ) for a, b, typ in metrics.entity_spans(t.gold, strict=self._strict)],
                [t.char_span(a, b, typ) for a, b, typ in found],
                [float(np.mean(t.scores[a:b])) for a, b, _ in found],
            )
            for t in tagged
            for found in [metrics.entity_spans(t.predicted, strict=self._strict)]
        ]

        def place(i: int, char: int) -> str:
            starts = tagged[i].example.word_starts  # given words (CoNLL): the line of the span's first token
            return token_where(records, i, bisect.bisect_right(starts, char) - 1) if starts else records.where(i)

        return entity_sections(per_type, sentences, place)

    def postprocess(
        self,
        records: Records,
        features: Features,
        outputs: list[Any],
        *,
        aggregation_strategy: str | None = None,
        **_: Any,
    ) -> list[dict]:
        strategy = aggregation_strategy or self.recipe.aggregation
        examples = self._examples(records, with_targets=False)
        merged = merge_windows(features, outputs, len(records))
        return [{"entities": self.entities(ex.text, tokens, strategy)} for ex, tokens in zip(examples, merged)]

    def entities(self, text: str, tokens: Tokens, strategy: str) -> list[dict[str, Any]]:
        """Token predictions -> entities, with the aggregation strategies of transformers' pipeline."""
        if not tokens.offsets:
            return []
        logits = np.stack(tokens.rows).astype(np.float32)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        best, top = probs.argmax(-1), probs.max(-1)
        spans = tokens.offsets
        if strategy == "none":
            return [
                {"tag": self.names[b], "text": text[s:e], "start": s, "end": e, "score": float(p)}
                for b, p, (s, e) in zip(best, top, spans)
                if self.names[b] != "O"
            ]
        if strategy == "simple":
            units = [(int(b), float(p), s, e) for b, p, (s, e) in zip(best, top, spans)]
        elif strategy in ("first", "average", "max"):
            units = []
            for a, b in word_runs(tokens.word_starts):
                if strategy == "first":
                    q = a
                elif strategy == "max":
                    q = a + int(top[a:b].argmax())
                else:
                    mean = probs[a:b].mean(0)
                    units.append((int(mean.argmax()), float(mean.max()), spans[a][0], spans[b - 1][1]))
                    continue
                units.append((int(best[q]), float(top[q]), spans[a][0], spans[b - 1][1]))
        else:
            raise HftkError(f"aggregation {strategy!r}: choose none, simple, first, average or max")
        return [
            {"type": typ, "text": text[s:e], "start": s, "end": e, "score": score}
            for typ, s, e, score in group_tags([(self.names[b], p, s, e) for b, p, s, e in units])
        ]


def _weight_names(recipe: TokenClassificationRecipe) -> list[str]:
    """What a `class_weights` key may name, given the recipe's labels: an entity type or one of its tags."""
    return [*recipe.labels, *label_names(recipe.labels, recipe.scheme)]


@dataclass
class _Tagged:
    """One record as scored: its labelled units (token positions), their gold and predicted tags and the
    predicted tags' probabilities."""

    example: Example
    tokens: Tokens
    units: list[int]
    gold: list[str]
    predicted: list[str]
    scores: list[float]

    def char_span(self, a: int, b: int, typ: str) -> tuple[int, int, str]:
        """Units a..b-1 as characters of the text: a unit runs to the token before the next unit (its word)."""
        last = self.units[b] - 1 if b < len(self.units) else len(self.tokens.offsets) - 1
        return self.tokens.offsets[self.units[a]][0], self.tokens.offsets[last][1], typ


def _top(logits: np.ndarray) -> float:
    """The softmax probability of the argmax."""
    z = np.exp(logits - logits.max())
    return float(z.max() / z.sum())
