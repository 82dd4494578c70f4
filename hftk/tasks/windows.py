"""Texts longer than the model's window, for token classification: overlapping windows of tokens, and each
token's output taken back from the window that saw it best (the most context on both sides)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np

from hftk.tasks.base import Features


@dataclass
class Tokens:
    """One record's tokens in order, merged from its windows."""

    offsets: list[tuple[int, int]]
    word_ids: list[int]
    rows: list[np.ndarray]  # the model output of each token (from the window that saw it best)

    @property
    def word_starts(self) -> list[bool]:
        return [p == 0 or w != self.word_ids[p - 1] for p, w in enumerate(self.word_ids)]


def input_windows(enc: Any, stride: int) -> list[list[tuple[int, int]]]:
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


def record_tokens(
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


def word_runs(starts: list[bool]) -> list[tuple[int, int]]:
    """[start, end) index runs, a new one at each True."""
    bounds = [p for p, s in enumerate(starts) if s or p == 0]
    return list(zip(bounds, [*bounds[1:], len(starts)]))
