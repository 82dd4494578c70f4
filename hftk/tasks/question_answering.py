"""Extractive question answering: SQuAD v1.1/v2.0, JSQuAD and flat question/context rows.

One record is one question about one context; the answer is a span of the context. A context longer than
`max_length` is cut into windows that share `doc_stride` tokens (the fast tokenizer's overflow), so an answer
near a cut is whole in at least one window. Training labels point at the answer's first and last token in the
windows that hold all of it, and at [CLS] in the others and for unanswerable questions (SQuAD v2).

Decoding reproduces transformers' question-answering pipeline (v4, the last with that pipeline), so hftk and a
pipeline on the same directory answer alike: in each window a softmax over the context tokens and [CLS], the
best (start, end) pairs of at most `max_answer_length` tokens scored p(start) * p(end), each widened to whole
words and turned into a span of the original context by offsets; candidates with the same text (any case) add
their scores, across windows too, and the best one answers. SQuAD v2's "no answer" is [CLS] in every window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from hftk.config.recipe import Recipe
from hftk.data.records import Records, Split, squad_questions
from hftk.errors import HftkError
from hftk.report import Section
from hftk.report.answers import Answered, qa_sections
from hftk.tasks import metrics
from hftk.tasks.base import Features, Task
from hftk.tasks.spans import best_spans, place_null

# As the pipeline and the SQuAD examples: most SQuAD paragraphs then fit one window.
DEFAULT_MAX_LENGTH = 384
# Windows decoded at once: the span scores of a chunk take chunk x length x max_answer_length floats.
_CHUNK = 256


class QuestionAnsweringRecipe(Recipe):
    task: Literal["question-answering"]
    doc_stride: int = Field(default=128, gt=0)  # tokens two consecutive windows of a long context share
    max_answer_length: int = Field(default=30, ge=1)  # the longest answer predicted, in tokens
    # SQuAD v2: questions may have no answer in their context; the model may then answer "".
    allow_unanswerable: bool = False
    # v2 only: answer "" when log(no-answer score) - log(best span score) exceeds this (0: the pipeline's rule).
    null_score_threshold: float = 0.0
    # squad: official SQuAD EM/F1 over words. jsquad: JGLUE's, F1 over characters. auto: jsquad for Tohoku
    # Japanese BERT checkpoints, squad otherwise.
    metric: Literal["auto", "squad", "jsquad"] = "auto"
    # Widen predicted spans to whole words (pre-tokenizer words; MeCab words for Japanese), as the pipeline does.
    align_to_words: bool = True

    @field_validator("doc_stride")
    @classmethod
    def _stride_fits(cls, v: int, info: ValidationInfo) -> int:
        limit = info.data.get("max_length") or DEFAULT_MAX_LENGTH
        if v > max_doc_stride(limit):
            raise ValueError(f"must be at most half of max_length ({limit}), so that a question fits beside it")
        return v


def max_doc_stride(max_length: int) -> int:
    """Windows may share at most half their tokens, so that the question and some new context fit in each."""
    return max_length // 2


@dataclass
class _Answer:
    text: str
    start: int  # character offsets into the context, end exclusive
    end: int


class QuestionAnswering(Task):
    name = "question-answering"
    pipeline_task = "question-answering"
    recipe_class = QuestionAnsweringRecipe
    input_roles = ("question", "context")
    optional_roles = ("id",)
    target_roles = ("answers",)
    main_metric = "f1"
    output_names = ("start_logits", "end_logits")
    # bf16 autocast kept 97.7 % of a SQuAD model's answers (bench/precision.py), short of the 98 % asked of it:
    # `precision: auto` stays fp32 on CPU (--precision bf16 opts in; CUDA is unaffected).
    cpu_bf16 = False
    token_level = True
    windowed = True
    peft_task_type = "QUESTION_ANS"
    example_file = "train.json"
    recipe: QuestionAnsweringRecipe

    def __init__(self, recipe: QuestionAnsweringRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.specials = tokenizer.num_special_tokens_to_add(pair=True) if tokenizer is not None else 3
        if recipe.doc_stride > max_doc_stride(self.max_length):  # the model allows less than the recipe's max_length
            raise HftkError(
                f"recipe: doc_stride {recipe.doc_stride} is more than half of max_length {self.max_length} (the "
                f"most {recipe.model} takes); lower doc_stride"
            )

    def default_max_length(self) -> int:
        return DEFAULT_MAX_LENGTH

    @property
    def metric(self) -> str:
        if self.recipe.metric != "auto":
            return self.recipe.metric
        from hftk.models.japanese import BertJapaneseTokenizerFast  # imports transformers: only once a tokenizer exists

        return "jsquad" if isinstance(self.tokenizer, BertJapaneseTokenizerFast) else "squad"

    # -- data ------------------------------------------------------------------------------------------
    def read(self, path: str | Path) -> Records:
        """Flat rows (JSON, JSONL, Parquet, CSV, saved datasets) or SQuAD's nested articles/paragraphs/qas."""
        records = super().read(path).whole()
        if "paragraphs" in records.columns or "qas" in records.columns:
            records = squad_questions(records, self.recipe.data.column)
        self._check_ids(records)
        return records

    def _where(self, records: Records, i: int) -> str:
        """A record's place for errors, with its question id when it has one."""
        where = records.where(i)
        qid = records.rows[i].get(self.recipe.data.column("id"))
        named = f"question id {qid!r}"
        # Rows read from SQuAD's layout (`squad_questions`) name their question already.
        return where + (f": {named}" if qid is not None and named not in where else "")

    def _check_ids(self, records: Records) -> None:
        """Duplicate ids would make two questions indistinguishable in predictions and reports."""
        name = self.recipe.data.column("id")
        if name not in records.columns:
            return
        first: dict[Any, int] = {}
        for i, row in enumerate(records.rows):
            qid = row.get(name)
            if qid is None:
                continue
            key = str(qid)
            if key in first:
                raise HftkError(
                    f"{self._where(records, i)}: duplicate id (questions {first[key] + 1} and {i + 1} of the file "
                    "share it); give each question its own id"
                )
            first[key] = i

    def _texts(self, records: Records, role: str) -> list[str]:
        name = self.recipe.data.column(role)
        if name not in records.columns:
            records.column(name, role)  # the located 'no column' error
        out = []
        for i, row in enumerate(records.rows):
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                what = "missing" if value is None else "empty" if isinstance(value, str) else "not text"
                raise HftkError(
                    f"{self._where(records, i)}: the {role} is {what}; each row needs a question and a context"
                )
            out.append(value)
        return out

    def answers(self, records: Records) -> list[list[_Answer]]:
        """Every gold answer of every record, checked against its context: a mismatch is a located error."""
        contexts = self._texts(records, "context")
        name = self.recipe.data.column("answers")
        if name not in records.columns:
            records.column(name, "answers")  # the located 'no column' error
        out = []
        for i, context in enumerate(contexts):
            value = records.rows[i].get(name)
            pairs = _answer_pairs(value)
            if pairs is None:
                raise HftkError(
                    f"{self._where(records, i)}: answers must be {{text: [...], answer_start: [...]}} or a list of "
                    f"{{text, answer_start}}, got {value!r}"
                )
            answers = []
            for text, start in pairs:
                if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
                    raise HftkError(
                        f"{self._where(records, i)}: an answer needs non-empty text and an integer answer_start, "
                        f"got text {text!r}, answer_start {start!r}"
                    )
                found = context[start : start + len(text)] if start >= 0 else ""
                if found != text:
                    at = context.find(text)
                    hint = f"the text occurs at {at}" if at >= 0 else "the text is not in the context at all"
                    raise HftkError(
                        f"{self._where(records, i)}: answer {text!r} is not at answer_start {start} of its context "
                        f"(it reads {found!r} there; {hint}); fix answer_start or the text"
                    )
                answers.append(_Answer(text, start, start + len(text)))
            if not answers and not self.recipe.allow_unanswerable:
                raise HftkError(
                    f"{self._where(records, i)}: the question has no answer; add one, or set allow_unanswerable: "
                    "true for SQuAD v2-style data"
                )
            out.append(answers)
        return out

    def targets(self, records: Records) -> list[tuple[int, int] | None]:
        """The first gold answer's character span (what training learns), trimmed of surrounding spaces so it
        starts and ends on a token; None for an unanswerable question."""
        return [_trimmed(answers[0]) if answers else None for answers in self.answers(records)]

    fold_group_names = ("question", "context")

    def fold_groups(self, records: Records) -> list[Any] | None:
        return self.column(records, "context")  # a context's questions in one fold: no answer seen in training

    def encode(self, records: Records, *, with_targets: bool) -> Features:
        """Question + context windows; `example`, `offset_mapping`, `context` and `word_ids` stay for decoding."""
        questions = self._texts(records, "question")
        contexts = self._texts(records, "context")
        self._check_questions(records, questions)
        enc = self.tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=self.max_length,
            stride=self.recipe.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        n = len(enc["input_ids"])
        features: Features = {k: enc[k] for k in self.tokenizer.model_input_names if k in enc}
        features["example"] = list(enc["overflow_to_sample_mapping"])
        features["offset_mapping"] = [[list(o) for o in offsets] for offsets in enc["offset_mapping"]]
        context_masks, word_ids = [], []
        for f in range(n):
            seq = enc.sequence_ids(f)
            context_masks.append([int(s == 1) for s in seq])
            word_ids.append([-1 if w is None or s != 1 else w for s, w in zip(seq, enc.word_ids(f))])
        features["context"] = context_masks
        features["word_ids"] = word_ids
        if with_targets:
            starts, ends = self._positions(features, self.targets(records))
            features["start_positions"] = starts
            features["end_positions"] = ends
        return features

    def _check_questions(self, records: Records, questions: list[str]) -> None:
        """A question so long that no context fits beside it: the tokenizer would panic, not raise."""
        room = self.max_length - self.specials - self.recipe.doc_stride
        lengths = [len(ids) for ids in self.tokenizer(questions, add_special_tokens=False)["input_ids"]]
        for i, n in enumerate(lengths):
            if n >= room:
                raise HftkError(
                    f"{self._where(records, i)}: the question is {n} tokens; with max_length {self.max_length} and "
                    f"doc_stride {self.recipe.doc_stride} a question may have at most {room - 1}; shorten it, raise "
                    "max_length or lower doc_stride"
                )

    def _positions(self, features: Features, spans: list[tuple[int, int] | None]) -> tuple[list[int], list[int]]:
        """Start/end token of each window's answer: [CLS] when the window does not hold all of it."""
        cls_id = self.tokenizer.cls_token_id
        starts, ends = [], []
        for ids, offsets, context, example in zip(
            features["input_ids"], features["offset_mapping"], features["context"], features["example"]
        ):
            cls = ids.index(cls_id) if cls_id in ids else 0
            span = spans[example]
            tokens = np.flatnonzero(context)
            start = end = cls
            if span is not None and _holds(offsets, context, span):
                offs = np.asarray(offsets)[tokens]
                s, e = span
                # first token ending after the answer starts, last token starting before it ends
                start = int(tokens[np.searchsorted(offs[:, 1], s, side="right")])
                end = int(tokens[np.searchsorted(offs[:, 0], e, side="left") - 1])
            starts.append(start)
            ends.append(end)
        return starts, ends

    def unaligned(self, records: Records) -> list[int]:
        """Records whose gold answer (the first) is not exactly a run of whole tokens in any window.

        Training then learns a slightly wider or narrower span, and even a perfect model cannot predict the
        gold text exactly: e.g. an answer that ends inside a MeCab word or a WordPiece token.
        """
        features = self.encode(records, with_targets=True)
        spans = self.targets(records)
        recovered = [False] * len(records)
        for example, offsets, start, end in zip(
            features["example"], features["offset_mapping"], features["start_positions"], features["end_positions"]
        ):
            # A window without the answer points at [CLS], whose (0, 0) span matches no answer.
            if spans[example] is not None:
                recovered[example] |= (offsets[start][0], offsets[end][1]) == spans[example]
        return [i for i, ok in enumerate(recovered) if not ok and spans[i] is not None]

    def lengths(self, split: Split) -> list[int]:
        records = split.whole()
        questions, contexts = self._texts(records, "question"), self._texts(records, "context")
        return [len(ids) for ids in self.tokenizer(questions, contexts)["input_ids"]]

    def summary(self, split: Split) -> dict[str, Any]:
        records = split.whole()
        info: dict[str, Any] = {"contexts": len(set(self._texts(records, "context")))}
        if self.has_role(records, "answers"):
            answers = self.answers(records)
            info["answers per question"] = round(sum(map(len, answers)) / max(len(answers), 1), 2)
            if self.recipe.allow_unanswerable:
                info["unanswerable"] = sum(not a for a in answers)
        return info

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        predicted = self.postprocess(records, features, outputs)
        answers = self.answers(records)
        exact, f1 = metrics.qa_each(
            [p["answer"] for p in predicted], [[a.text for a in g] for g in answers], self.metric
        )
        # Whether some gold answer lies whole in one of the question's windows: else none can predict it.
        in_window = [not g for g in answers]
        for offsets, context, example in zip(features["offset_mapping"], features["context"], features["example"]):
            in_window[example] |= any(_holds(offsets, context, _trimmed(a)) for a in answers[example])
        items = [
            Answered(
                question,
                context,
                [(a.start, a.end) for a in gold],
                (p["start"], p["end"]) if p["answer"] else None,
                float(p["score"]),
                e,
                f,
                metrics.qa_length(gold[0].text, self.metric) if gold else None,
                found,
            )
            for question, context, gold, p, e, f, found in zip(
                self._texts(records, "question"),
                self._texts(records, "context"),
                answers,
                predicted,
                exact,
                f1,
                in_window,
            )
        ]
        unit = "characters" if self.metric == "jsquad" else "words"
        return qa_sections(items, unit, lambda i: self._where(records, i))

    # -- model -----------------------------------------------------------------------------------------
    def example_input(self) -> dict[str, Any]:
        return {
            "question": "Where was the game played?",
            "context": "The final was played at Levi's Stadium in Santa Clara, California, on February 7, 2016.",
        }

    def pipeline_example(self) -> tuple[str, str]:
        return "", ", ".join(f"{k}={v!r}" for k, v in self.example_input().items())

    def auto_model(self) -> Any:
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    # -- outputs ---------------------------------------------------------------------------------------
    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        predicted = [p["answer"] for p in self.postprocess(records, features, outputs)]
        gold = [[a.text for a in answers] for answers in self.answers(records)]
        return getattr(metrics, self.metric)(predicted, gold)

    def postprocess(
        self,
        records: Records,
        features: Features,
        outputs: list[Any],
        *,
        top_k: int | None = None,
        max_answer_length: int | None = None,
        **_: Any,
    ) -> list[dict[str, Any]]:
        """One answer per record from its windows' start/end logits: {answer, start, end, score}, plus the
        `top_k` best answers when asked (see the module docstring)."""
        k = 1 if top_k is None else top_k
        if k < 1:
            raise HftkError(f"top_k must be 1 or more, got {top_k}")
        longest = max_answer_length or self.recipe.max_answer_length
        # As the pipeline: more candidates than asked for, since several merge into one text.
        per_window = k * 2 + 10 if self.recipe.align_to_words else k
        contexts = self._texts(records, "context")
        candidates: list[list[tuple[int, int, float]]] = []
        null_scores = np.empty(len(outputs), dtype=np.float64)
        for lo in range(0, len(outputs), _CHUNK):
            hi = min(lo + _CHUNK, len(outputs))
            found, nulls = best_spans(
                features,
                outputs,
                lo,
                hi,
                longest=longest,
                keep=per_window,
                cls_id=self.tokenizer.cls_token_id,
                align_to_words=self.recipe.align_to_words,
            )
            candidates.extend(found)
            null_scores[lo:hi] = nulls

        # Windows in feature order within each record, as the pipeline meets them.
        by_record: list[list[int]] = [[] for _ in contexts]
        for f, example in enumerate(features["example"]):
            by_record[example].append(f)
        results = []
        for r, windows in enumerate(by_record):
            merged: dict[str, dict[str, Any]] = {}
            answers: list[dict[str, Any]] = []
            for f in windows:
                for start, end, score in candidates[f]:
                    text = contexts[r][start:end]
                    seen = merged.get(text.lower())
                    if seen is not None:
                        seen["score"] += score
                    else:
                        merged[text.lower()] = answer = {"answer": text, "start": start, "end": end, "score": score}
                        answers.append(answer)
            answers.sort(key=lambda a: a["score"], reverse=True)
            if self.recipe.allow_unanswerable and windows:
                null = {"answer": "", "start": 0, "end": 0, "score": float(null_scores[windows].min())}
                answers = place_null(answers, null, self.recipe.null_score_threshold)
            if not answers:
                answers = [{"answer": "", "start": 0, "end": 0, "score": 0.0}]
            row = dict(answers[0])
            if top_k is not None:
                row["top_k"] = answers[:k]
            results.append(row)
        return results


def _trimmed(answer: _Answer) -> tuple[int, int]:
    """An answer's character span without the spaces around it, so it starts and ends on a token."""
    if not answer.text.strip():
        return answer.start, answer.end
    lead = len(answer.text) - len(answer.text.lstrip())
    return answer.start + lead, answer.start + lead + len(answer.text.strip())


def _holds(offsets: list[Any], context: list[int], span: tuple[int, int]) -> bool:
    """Whether a window's context tokens cover the character span whole."""
    tokens = np.flatnonzero(context)
    return bool(len(tokens)) and offsets[tokens[0]][0] <= span[0] and offsets[tokens[-1]][1] >= span[1]


def _answer_pairs(value: Any) -> list[tuple[Any, Any]] | None:
    """(text, answer_start) pairs from the flat {text: [...], answer_start: [...]} or SQuAD's list of objects."""
    if isinstance(value, dict) and isinstance(value.get("text"), list) and isinstance(value.get("answer_start"), list):
        if len(value["text"]) != len(value["answer_start"]):
            return None
        return list(zip(value["text"], value["answer_start"]))
    if isinstance(value, list) and all(isinstance(a, dict) for a in value):
        return [(a.get("text"), a.get("answer_start")) for a in value]
    return None
