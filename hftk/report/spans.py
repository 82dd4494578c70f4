"""What a span model (NER) gets wrong: per-type scores and each wrong span by kind, shown in its sentence.

Pure functions of entity spans (start, end, type), character offsets into each record's text, end exclusive: no
model or tokenizer here. The task adapter gives the gold and predicted spans that its metric counts (seqeval's
entities, mapped to characters), so the correct spans here are seqeval's true positives.

How a predicted span that is not exactly a gold one is classed (each predicted span on its own, against the gold
spans it overlaps; the one of its own type first, then the one it overlaps most):
- wrong type: the same boundaries as a gold span, another type;
- wrong boundary: overlaps a gold span of its type, other boundaries (a gold span split in two is two of these);
- wrong type and boundary: overlaps gold spans of other types only, with other boundaries;
- spurious: overlaps no gold span.
A gold span that no predicted span overlaps is missed. A gold span overlapped by a wrong prediction is that
prediction's error, not also a missed one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hftk.report import plots
from hftk.report.page import Example, Section, Table

Span = tuple[int, int, str]  # start, end (exclusive), type
Found = tuple[str, Span | None, Span | None, int | None]  # kind, gold span, predicted span, index of the predicted

KINDS = ("wrong type", "wrong boundary", "wrong type and boundary", "missed", "spurious")
_SHORT = ["wrong\ntype", "wrong\nboundary", "type and\nboundary", "missed", "spurious"]  # KINDS on the figure's axis
SHOWN_PER_KIND = 5  # examples shown of each kind of error; report.json lists the same ones
CONTEXT_CHARS = 120  # text kept on each side of the marked spans of a long input


@dataclass
class Sentence:
    """One record's text, its gold spans and the predicted ones, each predicted span with its score."""

    text: str
    gold: list[Span]
    predicted: list[Span]
    scores: list[float] = field(default_factory=list)


@dataclass
class SpanError:
    kind: str
    record: int
    gold: Span | None
    predicted: Span | None
    score: float | None  # the predicted span's confidence; None for a missed span


def compare(gold: Sequence[Span], predicted: Sequence[Span]) -> tuple[list[Span], list[Found]]:
    """One record's exact matches, and its errors (`Found`), classed as the module docstring says."""
    exact = set(gold) & set(predicted)
    errors: list[Found] = []
    touched: set[Span] = set()
    for k, p in enumerate(predicted):
        if p in exact:
            continue
        overlapping = [g for g in gold if g[0] < p[1] and p[0] < g[1]]
        if not overlapping:
            errors.append(("spurious", None, p, k))
            continue
        g = max(overlapping, key=lambda g: (g[2] == p[2], min(g[1], p[1]) - max(g[0], p[0])))
        touched.update(overlapping)
        if g[:2] == p[:2]:
            kind = "wrong type"
        elif g[2] == p[2]:
            kind = "wrong boundary"
        else:
            kind = "wrong type and boundary"
        errors.append((kind, g, p, k))
    errors += [("missed", g, None, None) for g in gold if g not in exact and g not in touched]
    return sorted(exact), errors


def marked(
    text: str, gold: Sequence[tuple[int, int]], predicted: Sequence[tuple[int, int]], around: int = CONTEXT_CHARS
) -> list[tuple[str, str | None]]:
    """`text` as segments marked gold, predicted or both (where a gold and a predicted span overlap), cut to
    `around` characters either side of the spans (an ellipsis where cut)."""
    spans = [*gold, *predicted]
    lo = max(0, min((s for s, _ in spans), default=0) - around)
    hi = min(len(text), max((e for _, e in spans), default=len(text)) + around)
    cuts = sorted({lo, hi, *(min(max(x, lo), hi) for s, e in spans for x in (s, e))})
    out: list[tuple[str, str | None]] = [("…", None)] if lo > 0 else []
    for a, b in itertools.pairwise(cuts):
        in_gold = any(s <= a and b <= e for s, e in gold)
        in_pred = any(s <= a and b <= e for s, e in predicted)
        mark = "both" if in_gold and in_pred else "gold" if in_gold else "predicted" if in_pred else None
        if out and out[-1][1] == mark and out[-1][0] != "…":
            out[-1] = (out[-1][0] + text[a:b], mark)
        else:
            out.append((text[a:b], mark))
    if hi < len(text):
        out.append(("…", None))
    return out


def entity_sections(
    per_type: dict[str, dict[str, float]],
    sentences: Sequence[Sentence],
    place: Callable[[int, int], str],
) -> list[Section]:
    """The NER report: seqeval's per-type table (`per_type`: its classification_report dict), the span errors by
    kind and type, and the surest errors of each kind in their sentences. `place(record, char)`: file:line of a
    character of a record (CoNLL: the line of its token)."""
    types = [t for t in per_type if not t.endswith(" avg")]
    predicted = Counter(t for s in sentences for *_, t in s.predicted)
    predicted["micro avg"] = sum(predicted.values())
    head = ["type", "precision", "recall", "f1", "support", "predicted"]
    rows = []
    for t in [*types, *(a for a in ("micro avg", "macro avg", "weighted avg") if a in per_type)]:
        row = per_type[t]
        found = predicted[t] if t in [*types, "micro avg"] else None  # an average has no count of its own
        # As hftk's metrics (not seqeval's 0): precision is undefined with nothing predicted, recall with no gold.
        precision = None if found == 0 else row["precision"]
        recall = None if not row["support"] else row["recall"]
        rows.append([t, precision, recall, row["f1-score"], int(row["support"]), found])
    correct: Counter[str] = Counter()
    errors: list[SpanError] = []
    for i, sentence in enumerate(sentences):
        exact, found = compare(sentence.gold, sentence.predicted)
        correct.update(t for *_, t in exact)
        for kind, g, p, k in found:
            score = sentence.scores[k] if k is not None and k < len(sentence.scores) else None
            errors.append(SpanError(kind, i, g, p, score))
    return [
        Section(
            "Per entity type",
            tables=[Table("Precision, recall and F1 by entity type (seqeval)", head, rows)],
            note="Entities count when both boundaries and the type are right, as seqeval scores them.",
        ),
        error_counts(types, correct, errors),
        Section(
            "Span errors",
            examples=_shown(errors, sentences, place),
            note=f"Up to {SHOWN_PER_KIND} of each kind, the surest predictions first (missed spans in file order); "
            "gold spans are marked green, predicted ones red, and where they overlap blue.",
        ),
    ]


def error_counts(types: Sequence[str], correct: Counter[str], errors: Sequence[SpanError]) -> Section:
    """Errors by kind and by type (the gold span's type; a spurious span's own), and which types are mistaken for
    which."""
    by_type: dict[str, Counter[str]] = {t: Counter() for t in types}
    confused: Counter[tuple[str, str]] = Counter()
    for e in errors:
        typ = (e.gold or e.predicted)[2]  # type: ignore[index]
        by_type.setdefault(typ, Counter())[e.kind] += 1
        if e.gold is not None and e.predicted is not None and e.gold[2] != e.predicted[2]:
            confused[e.gold[2], e.predicted[2]] += 1
    totals = Counter(e.kind for e in errors)
    head = ["type", "correct", *KINDS]
    rows = [[t, correct[t], *(c[k] for k in KINDS)] for t, c in by_type.items()]
    rows.append(["all", sum(correct.values()), *(totals[k] for k in KINDS)])
    tables = [Table("Span errors by kind and type", head, rows)]
    if confused:
        tables.append(
            Table(
                "Types mistaken for others (gold → predicted)",
                ["gold", "predicted", "spans"],
                [[g, p, n] for (g, p), n in sorted(confused.items(), key=lambda x: (-x[1], x[0]))],
            )
        )
    counts = [totals[k] for k in KINDS]
    return Section(
        "Span errors by kind",
        tables=tables,
        figures=[plots.bars("span_errors", "Span errors by kind", _SHORT, counts, ylabel="spans", counts=counts)],
        values={"correct spans": sum(correct.values()), "wrong spans": len(errors)},
        note="A predicted span is classed against the gold spans it overlaps: same boundaries and another type is "
        "a wrong type; its type with other boundaries a wrong boundary; other types only, with other boundaries, "
        "both; no overlap is spurious. A gold span that no prediction overlaps is missed.",
    )


def _shown(
    errors: Sequence[SpanError], sentences: Sequence[Sentence], place: Callable[[int, int], str]
) -> list[Example]:
    out = []
    for kind in KINDS:
        of_kind = [e for e in errors if e.kind == kind]
        if kind != "missed":
            of_kind.sort(key=lambda e: -(e.score or 0.0))  # stable: file order among equals
        for e in of_kind[:SHOWN_PER_KIND]:
            text = sentences[e.record].text
            segments = marked(text, [e.gold[:2]] if e.gold else [], [e.predicted[:2]] if e.predicted else [])
            first = min(s[0] for s in (e.gold, e.predicted) if s is not None)
            fields: dict[str, Any] = {
                "kind": kind,
                "gold": _named(text, e.gold),
                "predicted": _named(text, e.predicted),
                "score": e.score,
                "text": "".join(t for t, _ in segments),
            }
            out.append(Example(place(e.record, first), fields, segments))
    return out


def _named(text: str, span: Span | None) -> str | None:
    return None if span is None else f"{text[span[0] : span[1]]} [{span[2]}]"
