"""Documents into blocks for language modelling: tokenised once, joined with the tokenizer's separator and cut into
blocks of exactly `max_length` tokens (the last one may be shorter), so training batches carry no padding. Each token
keeps the index of the word it belongs to (`word_ids`), which whole-word masking needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hftk.errors import HftkError

_TOKENIZE_BATCH = 1000  # documents per tokenizer call: large enough for the Rust batch, small enough to stream


@dataclass(frozen=True)
class Template:
    """Special tokens a tokenizer puts around one sequence, and between two documents in a packed stream."""

    prefix: list[int]
    suffix: list[int]
    separator: list[int]

    @classmethod
    def of(cls, tokenizer: Any) -> Template:
        """Read from the tokenizer itself: BERT gives [CLS] .. [SEP] and [SEP]; GPT-2 nothing and <|endoftext|>."""
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        at = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), None)
        prefix, suffix = (full[:at], full[at + len(plain) :]) if at is not None else ([], [])
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if sep is None:
            raise HftkError(f"{tokenizer.name_or_path}: the tokenizer has neither a sep nor an eos token to join texts")
        return cls(prefix, suffix, [sep])


def pack(
    tokenizer: Any, texts: Sequence[str], block_size: int, *, documents: bool = False
) -> dict[str, list[list[int]]]:
    """Tokenise documents once and cut the joined stream into blocks of `block_size` tokens.

    Stream: doc1 SEP doc2 SEP ... ; each block is prefix + the next slice of the stream + suffix, so every block
    but the last is exactly `block_size` long. `word_ids` give each token its word within the block (0, 1, ...;
    tokens of one word share it, also where the word started in the previous block) and -1 for special tokens,
    which are never masked. `documents`: also a `document` column, each token's document (its index in `texts`;
    a separator belongs to the document it ends, the block's own special tokens to none, -1), so a score per token
    can be summed per document (the evaluation report's perplexity by document).

    Returns:
        Columns `input_ids`, `attention_mask` and `word_ids` (and `document`), one row per block.
    """
    template = Template.of(tokenizer)
    ids = words = docs = np.empty(0, dtype=np.int64)
    parts_ids, parts_words, parts_docs, next_word = [], [], [], 0
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        batch = texts[start : start + _TOKENIZE_BATCH]
        batch_ids, batch_words, count, batch_docs = stream_of(tokenizer, batch, template)
        if parts_ids:  # the separator between this batch's first document and the previous one's last
            parts_ids.append(np.asarray(template.separator, dtype=np.int64))
            parts_words.append(np.full(len(template.separator), -1, dtype=np.int64))
            parts_docs.append(np.full(len(template.separator), start - 1, dtype=np.int64))
        parts_ids.append(batch_ids)
        parts_words.append(np.where(batch_words >= 0, batch_words + next_word, -1))
        parts_docs.append(batch_docs + start)
        next_word += count
    if parts_ids:
        ids, words, docs = np.concatenate(parts_ids), np.concatenate(parts_words), np.concatenate(parts_docs)
    cut = blocks(ids, words, block_size, template, docs if documents else None)
    return {k: [row.tolist() for row in v] for k, v in cut.items()}


def stream_of(
    tokenizer: Any, texts: Sequence[str], template: Template
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(token ids, word ids, number of words, document of each token) of documents joined with the separator, in
    array operations.

    Word ids count on across documents (doc 2's first word follows doc 1's last); specials get -1. A separator's
    document is the one it ends.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, verbose=False)
    docs = enc["input_ids"]
    n = len(docs)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 0, np.empty(0, dtype=np.int64)
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=n)
    tokens = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int64, count=int(lengths.sum()))
    # word_ids() hold None for tokens outside any word (added special tokens): NaN, then -1.
    raw = np.array(list(itertools.chain.from_iterable(enc.word_ids(i) for i in range(n))), dtype=np.float64)
    local = np.where(np.isnan(raw), -1, raw).astype(np.int64)
    local[np.isin(tokens, np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64))] = -1
    doc_of = np.repeat(np.arange(n), lengths)
    # Each document's words come after all words of the documents before it.
    per_doc = np.full(n, -1, dtype=np.int64)
    np.maximum.at(per_doc, doc_of, local)
    offsets = np.concatenate([[0], np.cumsum(per_doc + 1)[:-1]])
    words = np.where(local >= 0, local + offsets[doc_of], -1)
    # Insert the separator after every document but the last.
    sep = np.asarray(template.separator, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + len(sep))[:-1]])
    total = int(lengths.sum()) + len(sep) * (n - 1)
    ids = np.empty(total, dtype=np.int64)
    out_words = np.full(total, -1, dtype=np.int64)
    position = starts[doc_of] + (np.arange(len(tokens)) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    ids[position] = tokens
    out_words[position] = words
    for k, token in enumerate(sep):
        ids[starts[1:] - len(sep) + k] = token
    # Each document's tokens and the separator after it: stream positions from its start to the next one's.
    document = np.repeat(np.arange(n), np.diff(np.append(starts, total)))
    return ids, out_words, int((per_doc + 1).sum()), document


def blocks(
    ids: np.ndarray, words: np.ndarray, block_size: int, template: Template, documents: np.ndarray | None = None
) -> dict[str, list[np.ndarray]]:
    """A token stream cut into blocks of `block_size`, each wrapped in the template's special tokens; word ids
    renumbered 0, 1, ... within each block (-1 stays). `documents` (each stream token's document): cut alike into a
    `document` column, the template's specials -1."""
    pre, suf = np.asarray(template.prefix, dtype=np.int64), np.asarray(template.suffix, dtype=np.int64)
    content = block_size - len(pre) - len(suf)
    if content < 1:
        raise HftkError(f"max_length {block_size} leaves no room for text between the special tokens; raise it")
    # Words are numbered in stream order, so a new word starts wherever the id changes from the previous word
    # token, or at the first word token of a block.
    valid = np.flatnonzero(words >= 0)
    block_of = valid // content
    new = np.ones(len(valid), dtype=bool)
    new[1:] = (words[valid[1:]] != words[valid[:-1]]) | (block_of[1:] != block_of[:-1])
    rank = np.cumsum(new) - 1
    first_rank = np.zeros(len(valid), dtype=np.int64)
    if len(valid):
        block_start = np.ones(len(valid), dtype=bool)
        block_start[1:] = block_of[1:] != block_of[:-1]
        first_rank = np.maximum.accumulate(np.where(block_start, rank, 0))
    renumbered = np.full(len(words), -1, dtype=np.int64)
    renumbered[valid] = rank - first_rank
    out: dict[str, list[np.ndarray]] = {"input_ids": [], "attention_mask": [], "word_ids": []}
    none_pre, none_suf = np.full(len(pre), -1, dtype=np.int64), np.full(len(suf), -1, dtype=np.int64)
    for start in range(0, len(ids), content):
        chunk = ids[start : start + content]
        out["input_ids"].append(np.concatenate([pre, chunk, suf]))
        out["attention_mask"].append(np.ones(len(pre) + len(chunk) + len(suf), dtype=np.int64))
        out["word_ids"].append(np.concatenate([none_pre, renumbered[start : start + content], none_suf]))
        if documents is not None:
            out.setdefault("document", []).append(
                np.concatenate([none_pre, documents[start : start + content], none_suf])
            )
    return out
