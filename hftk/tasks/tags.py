"""Tag schemes (IOB2, IOB1, BIOES) and the way between entity spans and token tags, for token classification.

Spans are character ranges with a type; tags are one label per token (or word). Reading a record's entities
checks them (in the text, not overlapping, a known type) and names the record when they are not.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hftk.data.records import Records
from hftk.errors import HftkError

PREFIXES = {"IOB2": "BI", "IOB1": "BI", "BIOES": "BIES"}
FORMS = {"IOB2": "O, B-TYPE, I-TYPE", "IOB1": "O, I-TYPE, B-TYPE", "BIOES": "O, B-, I-, E-, S-TYPE"}
# Files read as CoNLL columns (one token per line); other suffixes go through the usual readers.
CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".iob2", ".bio", ".bioes")


@dataclass
class Example:
    """One record as text and its entity spans, read and checked."""

    text: str
    spans: list[tuple[int, int, str]]  # sorted, non-overlapping character spans; empty when predicting
    word_starts: list[int] | None  # character starts of given words (CoNLL, token lists); None: tokenizer's words


class TagError(ValueError):
    """A tag that does not fit the scheme, at token `index`."""

    def __init__(self, index: int, tag: str) -> None:
        super().__init__(tag)
        self.index, self.tag = index, tag


def label_names(types: list[str], scheme: str) -> list[str]:
    """The model's labels: O, then each type's tags in the scheme's order."""
    return ["O"] + [f"{p}-{t}" for t in types for p in PREFIXES[scheme]]


def split_tag(tag: str, scheme: str) -> tuple[str, str | None]:
    if tag == "O":
        return "O", None
    prefix, sep, typ = tag.partition("-")
    if not sep or not typ or prefix not in PREFIXES[scheme]:
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
            prefix, typ = split_tag(tag, scheme)
        except ValueError:
            raise TagError(j, tag) from None
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


def from_spans(records: Records, i: int, text: Any, entities: Any, known: set[str] | None) -> Example:
    where = records.where(i)
    if not isinstance(text, str):
        raise HftkError(f"{where}: text must be a string, got {type(text).__name__}")
    if not isinstance(entities, list):
        raise HftkError(f"{where}: entities must be a list of {{span: [start, end], type}} objects, got {entities!r}")
    spans = []
    for entity in entities:
        span = span_of(entity)
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
            raise unknown_type(where, typ, sorted(known))
        spans.append((start, end, typ))
    spans.sort()
    for (s1, e1, _), (s2, e2, _) in itertools.pairwise(spans):
        if s2 < e1:
            raise HftkError(
                f"{where}: entity spans [{s1}, {e1}] and [{s2}, {e2}] overlap; nested entities are not supported, "
                "keep one of them"
            )
    return Example(text, spans, None)


def span_of(entity: Any) -> tuple[int, int, str] | None:
    if not isinstance(entity, dict) or not isinstance(entity.get("type"), str):
        return None
    span = entity.get("span", [entity.get("start"), entity.get("end")])
    if not (isinstance(span, list | tuple) and len(span) == 2 and all(isinstance(x, int) for x in span)):
        return None
    return span[0], span[1], entity["type"]


def unknown_type(where: str, typ: str, known: list[str]) -> HftkError:
    return HftkError(
        f"{where}: entity type {typ!r} is not among the training types ({', '.join(known)}); "
        "fix the record or list it under labels: in the recipe"
    )


def token_where(records: Records, i: int, j: int) -> str:
    """Where token j of record i is: its own line in a CoNLL file, else the record."""
    if records.lines is not None and Path(records.source).suffix.lower() in CONLL_SUFFIXES:
        return f"{records.source}:{records.lines[i] + j}"
    return f"{records.where(i)} (token {j + 1})"


def entity_of(offsets: list[tuple[int, int]], spans: list[tuple[int, int, str]]) -> list[int | None]:
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
