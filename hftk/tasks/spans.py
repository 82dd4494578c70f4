"""Answer spans from extractive QA's start/end logits, as transformers' question-answering pipeline finds them.

In each window: a softmax over the context tokens and [CLS], the best (start, end) pairs of at most `longest`
tokens scored p(start) * p(end), each widened to whole words and turned into a character span of the context by
the tokens' offsets. Vectorised over windows, so decoding a SQuAD dev set costs seconds, not minutes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hftk.data.records import Features


def best_spans(
    features: Features,
    outputs: list[Any],
    lo: int,
    hi: int,
    *,
    longest: int,
    keep: int,
    cls_id: int | None,
    align_to_words: bool,
) -> tuple[list[list[tuple[int, int, float]]], np.ndarray]:
    """The `keep` best spans of windows lo..hi as character spans, and each window's no-answer score.

    Vectorised over the windows: span (i, i + d) scores p_start[i] * p_end[i + d] for d < longest.
    """
    n = hi - lo
    width = max(len(outputs[f][0]) for f in range(lo, hi))
    start = np.full((n, width), -np.inf, dtype=np.float32)
    end = np.full((n, width), -np.inf, dtype=np.float32)
    context = np.zeros((n, width), dtype=bool)
    allowed = np.zeros((n, width), dtype=bool)
    word = np.full((n, width), -1, dtype=np.int64)
    offsets = np.zeros((n, width, 2), dtype=np.int64)
    for row, f in enumerate(range(lo, hi)):
        s, e = outputs[f]
        m = len(s)
        start[row, :m], end[row, :m] = s, e
        context[row, :m] = features["context"][f]
        allowed[row, :m] = context[row, :m] | (np.asarray(features["input_ids"][f]) == cls_id)
        word[row, :m] = features["word_ids"][f]
        offsets[row, :m] = features["offset_mapping"][f]

    # Softmax over the context and [CLS] (the tokens the pipeline leaves unmasked).
    p_start = _softmax(np.where(allowed, start, -np.inf))
    p_end = _softmax(np.where(allowed, end, -np.inf))
    nulls = p_start[:, 0] * p_end[:, 0]
    p_start = np.where(context, p_start, 0)
    p_start[:, 0] = 0
    p_end = np.where(context, p_end, 0)
    p_end[:, 0] = 0
    padded = np.concatenate([p_end, np.zeros((n, longest - 1), dtype=p_end.dtype)], axis=1)
    band = np.lib.stride_tricks.sliding_window_view(padded, longest, axis=1)[:, :width]
    scores = (p_start[:, :, None] * band).reshape(n, -1)  # [window, start * longest + length - 1]
    keep = min(keep, scores.shape[1])
    top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    first_tok = top // longest
    last_tok = np.minimum(first_tok + top % longest, width - 1)  # past the end only with score 0

    char_start, char_end = offsets[..., 0], offsets[..., 1]
    if align_to_words:
        char_start, char_end = _word_spans(word, context, char_start, char_end)
    rows = np.arange(n)[:, None]
    # The pipeline falls back to the tokens' own offsets when either end has no word.
    wordless = (word[rows, first_tok] < 0) | (word[rows, last_tok] < 0)
    span_start = np.where(wordless, offsets[rows, first_tok, 0], char_start[rows, first_tok])
    span_end = np.where(wordless, offsets[rows, last_tok, 1], char_end[rows, last_tok])
    found = [
        [(int(a), int(b), float(sc)) for a, b, sc in zip(span_start[r], span_end[r], top_scores[r]) if sc > 0]
        for r in range(n)
    ]
    return found, nulls


def _softmax(x: np.ndarray) -> np.ndarray:
    """Row softmax where -inf entries get 0 (a row of only -inf gets zeros)."""
    top = np.max(x, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    z = np.exp(x - top)
    total = z.sum(axis=1, keepdims=True)
    return z / np.where(total > 0, total, 1)


def _word_spans(
    word: np.ndarray, context: np.ndarray, char_start: np.ndarray, char_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each token's whole-word character span within its window: a word's tokens are consecutive."""
    n, width = word.shape
    same_as_prev = np.zeros_like(context)
    same_as_prev[:, 1:] = context[:, 1:] & context[:, :-1] & (word[:, 1:] == word[:, :-1]) & (word[:, 1:] >= 0)
    same_as_next = np.zeros_like(context)
    same_as_next[:, :-1] = same_as_prev[:, 1:]
    idx = np.broadcast_to(np.arange(width), (n, width))
    first = np.maximum.accumulate(np.where(same_as_prev, 0, idx), axis=1)
    last = width - 1 - np.maximum.accumulate(np.where(same_as_next, 0, width - 1 - idx)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n)[:, None]
    return char_start[rows, first], char_end[rows, last]


def place_null(answers: list[dict[str, Any]], null: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """Put the no-answer candidate among the span answers: first when log(null) - log(best) > threshold.

    With threshold 0 this is the pipeline's rule (the null answer only wins on a strictly higher score).
    """
    factor = math.exp(threshold)
    for i, answer in enumerate(answers):
        if null["score"] > answer["score"] * factor:
            return [*answers[:i], null, *answers[i:]]
    return [*answers, null]
