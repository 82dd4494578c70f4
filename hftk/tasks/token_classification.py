"""Token classification (NER): CoNLL columns, character-span JSON or token/tag lists -> entity spans.

Every input becomes text plus character spans, and token labels come from the tokenizer's offsets, so English
WordPiece and hftk's fast Japanese tokenizer work alike and predictions point into the user's own text. Inputs
longer than max_length are split into overlapping windows (never truncated away) and merged back token by token,
each token taken from the window where it has the most context on both sides.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from hftk.config.recipe import DataConfig, Recipe
from hftk.data.records import SCALARS, Records, not_one_value, read_conll
from hftk.errors import HftkError
from hftk.tasks import imbalance, metrics
from hftk.tasks.base import Features, Task

Scheme = Literal["IOB2", "IOB1", "BIOES"]
_PREFIXES = {"IOB2": "BI", "IOB1": "BI", "BIOES": "BIES"}
_FORMS = {"IOB2": "O, B-TYPE, I-TYPE", "IOB1": "O, I-TYPE, B-TYPE", "BIOES": "O, B-, I-, E-, S-TYPE"}
# Files read as CoNLL columns (one token per line); other suffixes go through the usual readers.
CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".iob2", ".bio", ".bioes")


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


@dataclass
class _Example:
    text: str
    spans: list[tuple[int, int, str]]  # sorted, non-overlapping character spans; empty when predicting
    word_starts: list[int] | None  # character starts of given words (CoNLL, token lists); None: tokenizer's words


@dataclass
class Tokens:
    """One record's tokens in order, merged from its windows."""

    offsets: list[tuple[int, int]]
    word_ids: list[int]
    rows: list[np.ndarray]  # the model output of each token (from the window that saw it best)

    @property
    def word_starts(self) -> list[bool]:
        return [p == 0 or w != self.word_ids[p - 1] for p, w in enumerate(self.word_ids)]


class TokenClassification(Task):
    name = "token-classification"
    pipeline_task = "token-classification"
    recipe_class = TokenClassificationRecipe
    input_roles = ("text",)
    optional_roles = ("tokens",)
    target_roles = ("entities",)  # or `tags` alongside `tokens`
    main_metric = "f1"
    token_level = True
    windowed = True
    peft_task_type = "TOKEN_CLS"
    # bf16 autocast kept 98.3 % of a CoNLL model's entity spans (bench/precision.py), short of the 99.5 % asked
    # of it: `precision: auto` stays fp32 on CPU (--precision bf16 opts in; CUDA is unaffected).
    cpu_bf16 = False
    recipe: TokenClassificationRecipe

    def __init__(self, recipe: TokenClassificationRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.types: list[str] = list(recipe.labels or [])
        self.names: list[str] = _label_names(self.types, recipe.scheme)
        self.weights: list[float] | None = None  # loss weights by tag id (fit, from class_weights)

    # -- data ------------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Records:
        if Path(path).suffix.lower() in CONLL_SUFFIXES:
            data = self.recipe.data
            return read_conll(path, tag_column=data.tag_column, tokens=data.column("tokens"), tags=data.column("tags"))
        return super().read(path)

    def has_targets(self, records: Records) -> bool:
        role = "tags" if self.has_role(records, "tokens") else "entities"
        return self.has_role(records, role)

    def learnt_fields(self) -> dict[str, Any]:
        return {} if self.recipe.labels else {"labels": list(self.types)}

    def fit(self, train: Records) -> None:
        if not self.recipe.labels:
            seen = {t for ex in self._examples(train, with_targets=True, check_types=False) for *_, t in ex.spans}
            if not seen:
                raise HftkError(f"{train.source}: no entities in train; a NER model needs labelled examples")
            self.types = sorted(seen)
            self.names = _label_names(self.types, self.recipe.scheme)
        self.weights = self._class_weights(train)

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
            for ex, windows in zip(examples, _windows(enc, self.recipe.stride)):
                labels = np.asarray(self._label_ids(*_record_tokens(enc, windows, ex.word_starts), ex.spans))
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

    def summary(self, records: Records) -> dict[str, Any]:
        if not self.has_targets(records):
            return {}
        counts = Counter(t for ex in self._examples(records, with_targets=True) for *_, t in ex.spans)
        return {"labels": dict(sorted(counts.items()))}

    def lengths(self, records: Records) -> list[int]:
        texts = [ex.text for ex in self._examples(records, with_targets=False)]
        return [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]

    def _examples(self, records: Records, *, with_targets: bool, check_types: bool = True) -> list[_Example]:
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
        return [_from_spans(records, i, t, e, known) for i, (t, e) in enumerate(zip(texts, entity_lists))]

    def _from_tokens(self, records: Records, i: int, tokens: Any, tags: Any, known: set[str] | None) -> _Example:
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise HftkError(f"{records.where(i)}: tokens must be a list of non-empty strings, got {tokens!r}")
        starts, pos = [], 0
        for token in tokens:
            starts.append(pos)
            pos += len(token) + 1
        text = " ".join(tokens)
        if tags is None:
            return _Example(text, [], starts)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            n = len(tags) if isinstance(tags, list) else type(tags).__name__
            raise HftkError(f"{records.where(i)}: {len(tokens)} tokens but {n} tags; give one tag per token")
        tags = [self._tag_name(records, i, j, t) for j, t in enumerate(tags)]
        try:
            word_spans = tags_to_spans(tags, self.recipe.scheme)
        except _TagError as e:
            raise HftkError(
                f"{_token_where(records, i, e.index)}: tag {e.tag!r} is not {self.recipe.scheme} "
                f"({_FORMS[self.recipe.scheme]}); fix it or set scheme: in the recipe"
            ) from None
        spans = []
        for a, b, typ in word_spans:
            if known is not None and typ not in known:
                raise _unknown_type(_token_where(records, i, a), typ, self.types)
            spans.append((starts[a], starts[b - 1] + len(tokens[b - 1]), typ))
        return _Example(text, spans, starts)

    def _tag_name(self, records: Records, i: int, j: int, tag: Any) -> str:
        if isinstance(tag, str):
            return tag
        if not isinstance(tag, SCALARS):  # tags nested one level too deep (a list of lists, structs)
            raise not_one_value(
                _token_where(records, i, j),
                self.recipe.data.column("tags"),
                tag,
                "tags are a flat list, one tag per token",
                "store one tag name (or number, with tag_names:) per token",
            )
        names = self.recipe.tag_names
        if isinstance(tag, int) and not isinstance(tag, bool) and names and 0 <= tag < len(names):
            return names[tag]
        raise HftkError(
            f"{_token_where(records, i, j)}: tag {tag!r} is a number without a name; "
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
        for i, windows in enumerate(_windows(enc, self.recipe.stride)):
            ex = examples[i]
            offsets, word_ids = _record_tokens(enc, windows, ex.word_starts)
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

    def _tokenize(self, examples: list[_Example]) -> Any:
        """The examples' texts in overlapping windows of max_length tokens, with offsets (`_windows` reads them)."""
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
        entity = _entity_of(offsets, spans)
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
        gold, pred = [], []
        for ex, tokens in zip(
            self._examples(records, with_targets=True), merge_windows(features, outputs, len(records))
        ):
            tags = self._gold_tags(tokens.offsets, tokens.word_ids, ex.spans)
            gold.append(list(tags.values()))
            pred.append([self.names[int(tokens.rows[p].argmax())] for p in tags])
        return metrics.entities(gold, pred, strict=self.recipe.scheme == "BIOES")

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
            for a, b in _runs(tokens.word_starts):
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


# ------------------------------------------------------------------------------------------------ schemes


class _TagError(ValueError):
    def __init__(self, index: int, tag: str) -> None:
        super().__init__(tag)
        self.index, self.tag = index, tag


def _label_names(types: list[str], scheme: str) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in types for p in _PREFIXES[scheme]]


def _weight_names(recipe: TokenClassificationRecipe) -> list[str]:
    """What a `class_weights` key may name, given the recipe's labels: an entity type or one of its tags."""
    return [*recipe.labels, *_label_names(recipe.labels, recipe.scheme)]


def _split_tag(tag: str, scheme: str) -> tuple[str, str | None]:
    if tag == "O":
        return "O", None
    prefix, sep, typ = tag.partition("-")
    if not sep or not typ or prefix not in _PREFIXES[scheme]:
        raise ValueError(tag)
    return prefix, typ


def tags_to_spans(tags: list[str], scheme: str) -> list[tuple[int, int, str]]:
    """Tag sequence -> (first, end, type) index spans, end exclusive.

    Lenient like conlleval: an I- (or E-) tag that does not continue an entity of its type starts one.
    """
    spans: list[tuple[int, int, str]] = []
    current: tuple[int, str] | None = None
    for j, tag in enumerate([*tags, "O"]):
        try:
            prefix, typ = _split_tag(tag, scheme)
        except ValueError:
            raise _TagError(j, tag) from None
        if current is not None and (prefix in "OBS" or typ != current[1]):
            spans.append((current[0], j, current[1]))
            current = None
        if typ is not None and current is None:
            current = (j, typ)
        if prefix in "ES" and current is not None:
            spans.append((current[0], j + 1, current[1]))
            current = None
    return spans


def unit_tags(entity_of: list[int | None], types: list[str], scheme: str) -> list[str]:
    """Tags of labelled tokens in order, given the entity each lies in (None: outside every entity)."""
    tags = []
    n = len(entity_of)
    for k, e in enumerate(entity_of):
        if e is None:
            tags.append("O")
            continue
        prev = entity_of[k - 1] if k else None
        first, last = prev != e, k == n - 1 or entity_of[k + 1] != e
        if scheme == "BIOES":
            prefix = ("S" if last else "B") if first else ("E" if last else "I")
        elif scheme == "IOB1":  # B- only where an entity directly follows another of the same type
            prefix = "B" if first and prev is not None and types[prev] == types[e] else "I"
        else:
            prefix = "B" if first else "I"
        tags.append(f"{prefix}-{types[e]}")
    return tags


def group_tags(units: list[tuple[str, float, int, int]]) -> list[tuple[str, int, int, float]]:
    """(tag, score, start, end) per token or word -> (type, start, end, mean score) per entity.

    The grouping of transformers' pipeline: a unit joins the previous group when it has the same type and does
    not begin an entity (B-; and S- in BIOES, whose E-/S- also end one). "O" groups are dropped.
    """
    groups: list[tuple[str | None, list[float], int, int, bool]] = []  # type, scores, start, end, closed
    for tag, score, start, end in units:
        prefix, _, typ = tag.partition("-") if tag != "O" else ("O", "", None)
        if not typ:  # "O", or a label outside the B-/I- form: the pipeline reads it as a type of its own
            prefix, typ = ("I", tag) if tag != "O" else ("O", None)
        last = groups[-1] if groups else None
        if last is not None and last[0] == typ and prefix not in "BS" and not last[4]:
            groups[-1] = (typ, [*last[1], score], last[2], end, prefix == "E")
        else:
            groups.append((typ, [score], start, end, prefix in "ES"))
    return [(typ, start, end, float(np.mean(scores))) for typ, scores, start, end, _ in groups if typ is not None]


# ------------------------------------------------------------------------------------------------ spans


def _from_spans(records: Records, i: int, text: Any, entities: Any, known: set[str] | None) -> _Example:
    where = records.where(i)
    if not isinstance(text, str):
        raise HftkError(f"{where}: text must be a string, got {type(text).__name__}")
    if not isinstance(entities, list):
        raise HftkError(f"{where}: entities must be a list of {{span: [start, end], type}} objects, got {entities!r}")
    spans = []
    for entity in entities:
        span = _span_of(entity)
        if span is None:
            raise HftkError(
                f"{where}: entity {entity!r} needs span: [start, end] (or start, end) and type; fix the record"
            )
        start, end, typ = span
        if not 0 <= start < end <= len(text):
            raise HftkError(
                f"{where}: entity span [{start}, {end}] is outside the text (length {len(text)}) or empty; "
                "spans are character offsets, end exclusive"
            )
        name = entity.get("name", entity.get("text"))
        if isinstance(name, str) and text[start:end] != name:
            raise HftkError(
                f"{where}: entity span [{start}, {end}] covers {text[start:end]!r}, but its name is {name!r}; "
                "fix the offsets (end is exclusive)"
            )
        if known is not None and typ not in known:
            raise _unknown_type(where, typ, sorted(known))
        spans.append((start, end, typ))
    spans.sort()
    for (s1, e1, _), (s2, e2, _) in itertools.pairwise(spans):
        if s2 < e1:
            raise HftkError(
                f"{where}: entity spans [{s1}, {e1}] and [{s2}, {e2}] overlap; nested entities are not supported, "
                "keep one of them"
            )
    return _Example(text, spans, None)


def _span_of(entity: Any) -> tuple[int, int, str] | None:
    if not isinstance(entity, dict) or not isinstance(entity.get("type"), str):
        return None
    span = entity.get("span", [entity.get("start"), entity.get("end")])
    if not (isinstance(span, list | tuple) and len(span) == 2 and all(isinstance(x, int) for x in span)):
        return None
    return span[0], span[1], entity["type"]


def _unknown_type(where: str, typ: str, known: list[str]) -> HftkError:
    return HftkError(
        f"{where}: entity type {typ!r} is not among the training types ({', '.join(known)}); "
        "fix the record or list it under labels: in the recipe"
    )


def _token_where(records: Records, i: int, j: int) -> str:
    """Where token j of record i is: its own line in a CoNLL file, else the record."""
    if records.lines is not None and Path(records.source).suffix.lower() in CONLL_SUFFIXES:
        return f"{records.source}:{records.lines[i] + j}"
    return f"{records.where(i)} (token {j + 1})"


def _entity_of(offsets: list[tuple[int, int]], spans: list[tuple[int, int, str]]) -> list[int | None]:
    """For each token, the index of the entity it lies in: the one it starts in, else one it overlaps."""
    starts = [s for s, _, _ in spans]
    out: list[int | None] = []
    for a, b in offsets:
        k = bisect.bisect_right(starts, a) - 1
        if k >= 0 and a < spans[k][1]:
            out.append(k)
        elif k + 1 < len(spans) and spans[k + 1][0] < b:
            out.append(k + 1)
        else:
            out.append(None)
    return out


# ------------------------------------------------------------------------------------------------ windows


def _windows(enc: Any, stride: int) -> list[list[tuple[int, int]]]:
    """Per input: its windows as (feature index, index of the window's first token in the whole input).

    The fast tokenizer's overflowing windows repeat the last `stride` tokens of the previous one, so each
    starts `stride` tokens before the previous one ends.
    """
    out: list[list[tuple[int, int]]] = []
    end = 0
    for j, i in enumerate(enc["overflow_to_sample_mapping"]):
        start = 0 if i == len(out) else end - stride
        if i == len(out):
            out.append([])
        out[i].append((j, start))
        end = start + len(enc["special_tokens_mask"][j]) - sum(enc["special_tokens_mask"][j])
    return out


def _record_tokens(
    enc: Any, windows: list[tuple[int, int]], word_starts: list[int] | None
) -> tuple[list[tuple[int, int]], list[int]]:
    """One input's tokens (offsets, word ids) in order, without the repeats of overlapping windows."""
    offsets: list[tuple[int, int]] = []
    word_ids: list[int] = []
    for j, start in windows:
        ids = enc.word_ids(j)
        for k, (o, s) in enumerate(zip(enc["offset_mapping"][j], enc["special_tokens_mask"][j])):
            if s:
                continue
            if start == len(offsets):
                offsets.append(tuple(o))
                if word_starts is None:
                    word_ids.append(ids[k] if ids[k] is not None else -1)
                else:  # words given by the data (CoNLL): the word the token starts in
                    word_ids.append(bisect.bisect_right(word_starts, o[0]) - 1)
            start += 1
    return offsets, word_ids


def merge_windows(features: Features, outputs: list[Any], n_records: int) -> list[Tokens]:
    """Per-window outputs -> each record's tokens, each taken from the window where it is most central."""
    by_record: list[list[int]] = [[] for _ in range(n_records)]
    for f, i in enumerate(features["example"]):
        by_record[i].append(f)
    merged = []
    for feats in by_record:
        feats.sort(key=lambda f: features["window_start"][f])
        spans = []  # (feature, content token indices in the window, first record position)
        for f in feats:
            content = [k for k, s in enumerate(features["special_tokens_mask"][f]) if not s]
            spans.append((f, content, features["window_start"][f]))
        tokens = Tokens([], [], [])
        for n, (f, content, start) in enumerate(spans):
            end = start + len(content)
            # Overlaps are split in the middle: the earlier window keeps the first half.
            lo = len(tokens.offsets)
            hi = (spans[n + 1][2] + end + 1) // 2 if n + 1 < len(spans) else end
            for p in range(max(lo, start), hi):
                k = content[p - start]
                tokens.offsets.append(tuple(features["offset_mapping"][f][k]))
                tokens.word_ids.append(features["word_ids"][f][k])
                tokens.rows.append(outputs[f][k])
        merged.append(tokens)
    return merged


def _runs(starts: list[bool]) -> list[tuple[int, int]]:
    """[start, end) index runs, a new one at each True."""
    bounds = [p for p, s in enumerate(starts) if s or p == 0]
    return list(zip(bounds, [*bounds[1:], len(starts)]))
