"""What an answering model gets wrong: extractive QA by answer length and question word, answers no window holds
and the worst answers in their context; multiple choice by number of choices and gold position, and its surest
wrong choices.

Pure functions of per-question scores (exact match and F1 as the task's metric computes them), spans and texts: no
model or tokenizer here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hftk.report import plots
from hftk.report.labels import SHOWN_EXAMPLES, Inputs
from hftk.report.page import Example, Figure, Section, Table
from hftk.report.spans import marked

# Gold answer length buckets (upper edges), in the units the metric's F1 counts.
LENGTH_EDGES = {"words": (1, 2, 3, 5, 10), "characters": (2, 4, 8, 16, 32)}
NO_ANSWER = "no answer"

# The first of these words in a question names its kind (whom and whose count as who).
_EN_WORDS = {w: w for w in ("what", "who", "when", "where", "which", "why", "how")} | {"whom": "who", "whose": "who"}
_EN_TOKEN = re.compile(r"[a-z]+")
# Japanese question words (and their kana spellings), by the earliest in the question; the longest wins a tie
# (どうして is why, not how).
_JA_WORDS = {
    "何": "何", "なに": "何", "なん": "何", "誰": "誰", "だれ": "誰", "いつ": "いつ", "どこ": "どこ", "どの": "どの",
    "どれ": "どの", "どちら": "どの", "なぜ": "なぜ", "どうして": "なぜ", "どう": "どう", "いくつ": "いくつ",
    "いくら": "いくつ",
}  # fmt: skip
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
QUESTION_WORDS = (*dict.fromkeys(_EN_WORDS.values()), *dict.fromkeys(_JA_WORDS.values()), "other")


def question_word(question: str) -> str:
    """The kind of a question: its first wh-word (English) or question word (Japanese), else "other"."""
    if _JAPANESE.search(question):
        found = [(question.find(w), -len(w), name) for w, name in _JA_WORDS.items() if w in question]
        return min(found)[2] if found else "other"
    return next((_EN_WORDS[t] for t in _EN_TOKEN.findall(question.lower()) if t in _EN_WORDS), "other")


def length_bucket(length: int | None, unit: str) -> str:
    """A gold answer's length as its bucket's label: "1", "4–5", "11+", or "no answer"."""
    if length is None:
        return NO_ANSWER
    lo = 1
    for edge in LENGTH_EDGES[unit]:
        if length <= edge:
            return str(edge) if lo == edge else f"{lo}–{edge}"
        lo = edge + 1
    return f"{lo}+"


def _length_labels(unit: str) -> list[str]:
    edges = LENGTH_EDGES[unit]
    return [length_bucket(e, unit) for e in edges] + [length_bucket(edges[-1] + 1, unit), NO_ANSWER]


# ---------------------------------------------------------------------------------- extractive QA


@dataclass
class Answered:
    """One question as scored: the context, its gold spans, the predicted span and the metric's scores."""

    question: str
    context: str
    gold: list[tuple[int, int]]  # character spans of the gold answers; empty: no answer (SQuAD v2)
    predicted: tuple[int, int] | None  # None: the model answered "" (no answer)
    score: float  # the prediction's score
    exact: float
    f1: float
    length: int | None  # the first gold answer's length in the metric's units; None: no answer
    in_window: bool  # some gold answer lies whole in one window the model read (it can be found)


def qa_sections(items: Sequence[Answered], unit: str, where: Callable[[int], str]) -> list[Section]:
    """The QA report: EM/F1 by gold answer length (`unit`: words or characters) and by question word, the
    questions whose answer no window holds, and the worst answers with both spans marked in the context."""
    exact = np.asarray([q.exact for q in items], dtype=float)
    f1 = np.asarray([q.f1 for q in items], dtype=float)
    by_length = _grouped(
        [length_bucket(q.length, unit) for q in items], _length_labels(unit), exact, f1, f"gold answer ({unit})"
    )
    by_word = _grouped([question_word(q.question) for q in items], QUESTION_WORDS, exact, f1, "question word")
    outside = [i for i, q in enumerate(items) if not q.in_window]
    worst = sorted(
        (i for i in range(len(items)) if f1[i] < 1), key=lambda i: (f1[i], -items[i].score)
    )  # stable: file order among equals
    return [
        Section(
            "By answer length",
            tables=[by_length[0]],
            figures=[by_length[1]],
            note=f"The first gold answer's length in {unit}, as the F1 counts them (normalised).",
        ),
        Section("By question word", tables=[by_word[0]], figures=[by_word[1]]),
        Section(
            "Answers outside every window",
            examples=[_qa_example(items[i], where(i)) for i in outside[:SHOWN_EXAMPLES]],
            values={"questions whose gold answer no window holds whole": len(outside)},
            note="The model reads a long context in windows: an answer cut by every window boundary cannot be "
            "predicted whole; more doc_stride (shared tokens) or a longer max_length lets a window hold it.",
        ),
        Section(
            "Worst answers",
            examples=[_qa_example(items[i], where(i)) for i in worst[:SHOWN_EXAMPLES]],
            note=f"{min(len(worst), SHOWN_EXAMPLES)} of {len(worst)} answers with F1 below 1, the lowest F1 and "
            "the surest first; gold answers are marked green, the predicted span red, and where they overlap blue.",
        ),
    ]


def _grouped(
    keys: Sequence[str], order: Sequence[str], exact: np.ndarray, f1: np.ndarray, what: str
) -> tuple[Table, Figure]:
    """Exact match and F1 of each group, in `order`, groups without questions left out."""
    keys_ = np.asarray(keys, dtype=object)
    rows = []
    for key in order:
        inside = keys_ == key
        if inside.any():
            rows.append([key, int(inside.sum()), float(exact[inside].mean()), float(f1[inside].mean())])
    name = re.sub(r"\W+", "_", what.split(" (")[0])
    figure = plots.bars(
        f"f1_by_{name}", f"F1 by {what}", [r[0] for r in rows], [r[3] for r in rows], ylabel="F1",
        counts=[r[1] for r in rows],
    )  # fmt: skip
    return Table(f"Exact match and F1 by {what}", [what, "questions", "exact match", "f1"], rows), figure


def _qa_example(q: Answered, where: str) -> Example:
    segments = marked(q.context, q.gold, [q.predicted] if q.predicted else [])
    fields = {
        "question": q.question,
        "text": "".join(t for t, _ in segments),
        "gold": " | ".join(q.context[s:e] for s, e in q.gold) or NO_ANSWER,
        "predicted": q.context[q.predicted[0] : q.predicted[1]] if q.predicted else NO_ANSWER,
        "exact match": q.exact,
        "f1": q.f1,
        "score": q.score,
    }
    return Example(where, fields, segments)


# ---------------------------------------------------------------------------------- multiple choice


def choice_sections(
    probs: Sequence[np.ndarray], gold: np.ndarray, choices: Sequence[Sequence[str]], inputs: Inputs
) -> list[Section]:
    """The multiple-choice report: accuracy by number of choices (beside chance), by the gold choice's position
    (a model that favours a position shows it here), and the surest wrong choices. `probs`: each row's softmax
    over its choices."""
    pred = np.asarray([int(p.argmax()) for p in probs])
    score = np.asarray([float(p.max()) for p in probs])
    correct = pred == gold
    n = np.asarray([len(p) for p in probs])
    rows = [[int(k), int((n == k).sum()), float(correct[n == k].mean()), 1 / k] for k in np.unique(n)]
    by_position = []
    for p in range(int(n.max(initial=0))):
        gold_here = gold == p
        accuracy = float(correct[gold_here].mean()) if gold_here.any() else None
        by_position.append([p, int(gold_here.sum()), int((pred == p).sum()), accuracy])
    wrong = np.flatnonzero(~correct)
    wrong = wrong[np.argsort(-score[wrong], kind="stable")][:SHOWN_EXAMPLES]
    shown = []
    for i in wrong:
        ex = inputs(int(i))
        ex.fields.update(
            choices=" | ".join(f"{j}. {c}" for j, c in enumerate(choices[i])),
            gold=f"{gold[i]}. {choices[i][gold[i]]}",
            predicted=f"{pred[i]}. {choices[i][pred[i]]}",
            score=float(score[i]),
            **{"gold score": float(probs[i][gold[i]])},
        )
        shown.append(ex)
    return [
        Section(
            "By number of choices",
            tables=[Table("Accuracy by number of choices", ["choices", "questions", "accuracy", "chance"], rows)],
            values={"accuracy": float(correct.mean()) if len(correct) else None},
        ),
        Section(
            "By gold position",
            tables=[
                Table(
                    "Gold and predicted choices by position", ["position", "gold", "predicted", "accuracy"], by_position
                )
            ],
            figures=[
                plots.bars(
                    "accuracy_by_position",
                    "Accuracy by the gold choice's position",
                    [str(r[0]) for r in by_position],
                    [r[3] for r in by_position],
                    ylabel="accuracy",
                    counts=[r[1] for r in by_position],
                )
            ],
            note="A model that prefers a position predicts it more often than gold has it.",
        ),
        Section(
            "Most confident errors",
            examples=shown,
            note=f"{len(shown)} of {int((~correct).sum())} errors, the surest wrong choice first; score: the "
            "predicted choice's probability, gold score: the gold choice's.",
        ),
    ]
