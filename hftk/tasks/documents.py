"""Documents longer than the model's window (`long_inputs:`), for the tasks that read a whole text (classification,
embeddings): cut at the window (`truncate`, transformers' way), keep the first and the last tokens (`head_tail`), or
read every part in overlapping `windows` whose outputs are pooled into one answer per document.

Windows are ordinary features that carry their document's index in `example` (as NER's and QA's do), so the cache,
`num_proc`, streaming and the length-grouped sampler treat them as any other feature. Each window is trained with its
document's label, or (`windows.loss: document`) batches hold whole documents and the loss is taken on their pooled
logits (training/trainer.py). Evaluation, `predict`, `serve` and the exported model answer whole documents. Of a
sentence pair only the first text is windowed (or cut to head and tail): the second is kept whole in every window.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from hftk.config.recipe import Recipe, Strict
from hftk.errors import HftkError
from hftk.tasks.base import Features

MODES = ("truncate", "head_tail", "windows")


class Windows(Strict):
    """How a long document is read in windows."""

    stride: int = Field(default=64, ge=0)  # tokens two consecutive windows share
    max_windows: int = Field(default=8, ge=1)  # per document; beyond, windows evenly apart, the first and last kept
    pooling: Literal["mean", "max"] = "mean"  # of the windows' logits: the document's answer
    # window: each window trained with its document's label; document: the loss of the pooled logits, each training
    # batch holding whole documents (batch size // max_windows of them, so a batch never holds more windows)
    loss: Literal["window", "document"] = "window"


class LongInputsRecipe(Recipe):
    """The fields of a task that reads whole documents."""

    long_inputs: Literal["truncate", "head_tail", "windows"] = "truncate"  # embeddings: sentence-transformers' way
    # head_tail: tokens kept from the start, the rest of the window from the end. Default: a quarter of the window
    # (Sun et al. 2019 found head 128 + tail 382 of BERT's 510 the best cut of IMDb reviews).
    head_tokens: int | None = Field(default=None, ge=1)
    windows: Windows = Field(default_factory=Windows)

    @model_validator(mode="after")
    def _fits_the_window(self) -> LongInputsRecipe:
        if self.max_length is not None and self.long_inputs == "windows" and self.windows.stride >= self.max_length - 2:
            raise ValueError(
                f"windows.stride: {self.windows.stride} tokens shared by two windows must be fewer than the window "
                f"(max_length {self.max_length}, less its special tokens); lower windows.stride"
            )
        if self.max_length is not None and (self.head_tokens or 0) >= self.max_length - 2:
            raise ValueError(
                f"head_tokens: {self.head_tokens} leaves no tail in max_length {self.max_length} (less its special "
                "tokens); lower head_tokens"
            )
        if self.long_inputs == "windows" and self.windows.loss == "document" and self.data.streaming:
            raise ValueError(
                "windows.loss: document batches whole documents, which needs the training split read whole; "
                "remove data.streaming or set windows.loss: window"
            )
        return self


def check_fits(recipe: LongInputsRecipe, max_length: int, special: int) -> None:
    """The window the model allows (`max_length` after the model's cap) must leave room past the stride."""
    if recipe.long_inputs == "windows" and recipe.windows.stride >= max_length - special:
        raise HftkError(
            f"recipe: windows.stride {recipe.windows.stride} is not below the window of {max_length - special} tokens "
            f"({recipe.model} takes at most max_length {max_length}); lower windows.stride"
        )


def encode(
    tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, recipe: LongInputsRecipe
) -> Features:
    """Token features of each text (and its pair), long ones handled as `recipe.long_inputs` says; with `windows`, one
    feature per window and `example`, the index of its text."""
    if recipe.long_inputs == "windows":
        return _windows(tokenizer, texts, pairs, max_length, recipe.windows)
    if recipe.long_inputs == "head_tail":
        return _head_tail(tokenizer, texts, pairs, max_length, head_tokens(recipe, max_length))
    return dict(tokenizer(texts, pairs, truncation=True, max_length=max_length))


def _windows(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, how: Windows) -> Features:
    try:
        enc = tokenizer(
            texts,
            pairs,
            truncation="only_first" if pairs is not None else True,
            max_length=max_length,
            stride=how.stride,
            return_overflowing_tokens=True,
        )
    except Exception as e:  # a pair whose second text leaves the first no room for a window past the stride
        raise HftkError(
            f"a sentence pair's second text is too long to window its first ({str(e).splitlines()[0]}); raise "
            "max_length, lower windows.stride, or shorten the second texts"
        ) from None
    example = list(enc.pop("overflow_to_sample_mapping"))
    keep = kept_windows(example, how.max_windows)
    features = {name: [values[i] for i in keep] for name, values in enc.items()}
    features["example"] = [example[i] for i in keep]
    return features


def kept_windows(example: list[int], most: int) -> list[int]:
    """The windows kept of each document (`example`: each window's document, in order): all when there are at most
    `most`, else `most` evenly apart, always the first and the last, so the head, the tail and the middle are read."""
    keep: list[int] = []
    start = 0
    while start < len(example):
        end = start
        while end < len(example) and example[end] == example[start]:
            end += 1
        n = end - start
        if n <= most:
            chosen: Any = range(n)
        elif most == 1:
            chosen = [0]
        else:  # spaced more than one apart, so rounding never gives one twice
            chosen = [round(k * (n - 1) / (most - 1)) for k in range(most)]
        keep.extend(start + k for k in chosen)
        start = end
    return keep


def head_tokens(recipe: LongInputsRecipe, max_length: int) -> int:
    """head_tail's tokens from the start: the recipe's, else a quarter of the window."""
    return recipe.head_tokens or max(1, (max_length - 2) // 4)


def _head_tail(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, head: int) -> Features:
    """The first `head` and the last tokens of each text that does not fit, cut from its one tokenisation (the tokens
    the whole text has, not a re-tokenised splice), inside the model's own special tokens."""
    layout = _Layout(tokenizer, pair=pairs is not None)
    room = max_length - layout.special
    firsts = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    seconds = tokenizer(pairs, add_special_tokens=False, verbose=False)["input_ids"] if pairs is not None else None
    features: Features = {name: [] for name in layout.names}
    for i, first in enumerate(firsts):
        second = seconds[i] if seconds is not None else None
        budget = room - (len(second) if second is not None else 0)
        if budget < 2:  # the pair's second text fills the window: cut both as transformers does
            out = tokenizer(texts[i], pairs[i] if pairs is not None else None, truncation=True, max_length=max_length)
            for name in layout.names:
                features[name].append(out[name])
            continue
        if len(first) > budget:
            kept = min(head, budget - 1)
            first = first[:kept] + first[len(first) - (budget - kept) :]
        around = layout.around(first, second)
        for name in layout.names:  # a model without token types (GPT-2, RoBERTa) takes none
            features[name].append(around[name])
    return features


class _Layout:
    """The special tokens a model puts around a text (and between a pair's two), with their token types, read once
    from the tokenizer's own output for a one-token text: so any model's layout ([CLS] a [SEP] b [SEP], <s> a </s></s>
    b </s>, ...) is kept without knowing it."""

    def __init__(self, tokenizer: Any, *, pair: bool) -> None:
        a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("a", "b"))
        whole = tokenizer("a", "b" if pair else None)
        ids = list(whole["input_ids"])
        types = list(whole["token_type_ids"]) if "token_type_ids" in whole else [0] * len(ids)
        i = _find(ids, a, 0)
        j = _find(ids, b, i + len(a)) if pair else len(ids)
        self.parts = [ids[:i], ids[i + len(a) : j], ids[j + len(b) :] if pair else []]
        self.types = [types[:i], types[i + len(a) : j], types[j + len(b) :] if pair else []]
        self.text_types = (types[i], types[j] if pair else 0)
        self.special = sum(map(len, self.parts))
        self.names = [n for n in ("input_ids", "token_type_ids", "attention_mask") if n in tokenizer.model_input_names]

    def around(self, first: list[int], second: list[int] | None) -> dict[str, list[int]]:
        (start, middle, end), (t_start, t_middle, t_end) = self.parts, self.types
        second = second or []
        ids = start + first + middle + second + end
        types = t_start + [self.text_types[0]] * len(first) + t_middle + [self.text_types[1]] * len(second) + t_end
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)}


def _find(ids: list[int], part: list[int], start: int) -> int:
    for k in range(start, len(ids) - len(part) + 1):
        if ids[k : k + len(part)] == part:
            return k
    raise HftkError("the tokenizer's special-token layout could not be read; use long_inputs: windows or truncate")


def pool(features: Features, outputs: list[Any], how: str, weights: list[int] | None = None) -> np.ndarray:
    """One row per document from its windows' rows: their mean (weighted by `weights`, e.g. tokens) or maximum.
    Features without `example` are one per document already."""
    rows = np.stack(outputs).astype(np.float64)
    if "example" not in features:
        return rows
    example = np.asarray(features["example"])
    docs = int(example.max()) + 1 if len(example) else 0
    if how == "max":
        out = np.full((docs, *rows.shape[1:]), -np.inf)
        np.maximum.at(out, example, rows)
        return out
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    sums = np.zeros((docs, *rows.shape[1:]))
    np.add.at(sums, example, rows * w.reshape(-1, *([1] * (rows.ndim - 1))))
    totals = np.zeros(docs)
    np.add.at(totals, example, w)
    return sums / totals.reshape(-1, *([1] * (rows.ndim - 1)))


def per_document(features: Features, column: str) -> list[Any]:
    """A feature column's value for each document (its first window's: every window carries its document's)."""
    if "example" not in features:
        return list(features[column])
    first: dict[int, Any] = {}
    for i, e in enumerate(features["example"]):
        first.setdefault(e, features[column][i])
    return [first[e] for e in range(len(first))]


def windows_of(lengths: np.ndarray, max_length: int, how: Windows, special: int = 2) -> np.ndarray:
    """How many windows each document of `lengths` tokens (special tokens included) is read in, after max_windows."""
    window = max_length - special
    content = np.maximum(lengths - special, 1)
    needed = 1 + np.ceil(np.maximum(content - window, 0) / max(window - how.stride, 1)).astype(int)
    return np.minimum(needed, how.max_windows)


def report(recipe: LongInputsRecipe, lengths: np.ndarray, max_length: int) -> tuple[str | None, dict[str, Any]]:
    """`hftk check` on a split's token counts: a warning when long documents will be cut off, else what the split's
    report says of them."""
    over = int((lengths > max_length).sum())
    if not over:
        return None, {}
    share = f"{over} of {len(lengths)} inputs ({over / len(lengths):.1%})"
    if recipe.long_inputs == "truncate":
        return (
            f"{share} are longer than max_length {max_length} tokens and will be truncated; raise max_length, "
            "or set long_inputs: windows (or head_tail)"
        ), {}
    if recipe.long_inputs == "head_tail":
        head = head_tokens(recipe, max_length)
        return None, {"longer than the window": f"{share}: their first {head} and last tokens are read (head_tail)"}
    n = windows_of(lengths, max_length, recipe.windows)
    capped = int((n >= recipe.windows.max_windows).sum())
    most = f"; {capped} reach max_windows {recipe.windows.max_windows}" if capped else ""
    read = f"read in windows, median {np.median(n):g} and max {n.max()} per document{most}"
    return None, {"longer than the window": f"{share}: {read}, pooled by {recipe.windows.pooling}"}


def card_note(recipe: LongInputsRecipe, max_length: int) -> list[str]:
    """The model card's word on long inputs: hftk's call reads them as trained; plain transformers truncates."""
    if recipe.long_inputs == "truncate":
        return []
    how = (
        f"in overlapping windows of {max_length} tokens ({recipe.windows.stride} shared, at most "
        f"{recipe.windows.max_windows} per document), their logits pooled by {recipe.windows.pooling}"
        + (" (the loss taken on the pooled logits)" if recipe.windows.loss == "document" else "")
        if recipe.long_inputs == "windows"
        else f"as its first {head_tokens(recipe, max_length)} and last tokens"
    )
    return [
        "## Long inputs",
        "",
        f"Trained and evaluated on documents read {how} (`long_inputs: {recipe.long_inputs}`). `hftk predict`, "
        "`hftk serve` and `hftk.pipeline(..., model=DIR)` read them the same way; plain `transformers.pipeline` "
        f"cuts every input at {max_length} tokens.",
        "",
    ]
