"""Plain text for language modelling: read documents, pack them into full blocks, mask them.

Shared by `masked-lm` and `causal-lm` (hftk/tasks/language_modeling.py):

- `read_texts`: files, directories and globs; `.txt` holds one document per line or blank-line paragraphs,
  other formats (JSONL, CSV, ...) a text column. Every document remembers its file and line.
- `pack`: documents tokenised once, joined with the tokenizer's separator and cut into blocks of exactly
  `max_length` tokens (the last one may be shorter), so training batches carry no padding. Each token keeps the
  index of the word it belongs to (`word_ids`), which whole-word masking needs.
- `BlockCollator`: stacks blocks and, for masked LM, masks them afresh each time a batch is drawn (dynamic
  masking), per token or per whole word.
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import hashlib
import itertools
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hftk.data.readers import READERS, read_lines, read_records
from hftk.data.records import Records
from hftk.data.snapshot import Snapshot
from hftk.errors import HftkError, not_found

PLAIN_SUFFIXES = (".txt", ".text")
_MAGIC = set("*?[")
_TOKENIZE_BATCH = 1000  # documents per tokenizer call: large enough for the Rust batch, small enough to stream


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class RecordsView(Records):
    """Records assembled from other Records (several files, or a subset): each row still says where it came from."""

    parts: list[Records] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # index of each part's first row here
    index: list[int] | None = None  # for a single-part subset: which rows of the part, in order

    def where(self, i: int) -> str:
        if self.index is not None:
            return self.parts[0].where(self.index[i])
        k = bisect.bisect_right(self.starts, i) - 1
        return self.parts[k].where(i - self.starts[k])


def subset(records: Records, index: Sequence[int]) -> Records:
    """The rows at `index`, keeping their original file:line."""
    index = list(index)
    return RecordsView(
        records.source, [records.rows[i] for i in index], None, list(records.columns), [records], [0], index
    )


def expand_paths(source: str | os.PathLike | Sequence[str]) -> list[Path]:
    """Files named by a path, a directory (every data file inside, recursively) or a glob; several as a list."""
    patterns = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(s) for s in source]
    if not patterns:
        raise HftkError("data: an empty list of files; name at least one file, directory or glob")
    known = {*PLAIN_SUFFIXES, *READERS}
    files: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if _MAGIC & set(pattern):
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
            if not matches:
                raise HftkError(f"{pattern}: no files match this pattern; check the path and the wildcard")
            files.extend(matches)
        elif p.is_dir():
            inside = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in known
                and not any(s.startswith(".") for s in f.relative_to(p).parts)  # hidden files and folders
            )
            if not inside:
                raise HftkError(f"{p}: no data files in this directory (looked for {', '.join(sorted(known))})")
            files.extend(inside)
        elif p.exists():
            files.append(p)
        else:
            raise not_found(p)
    return files


def read_texts(
    source: str | os.PathLike | Sequence[str],
    *,
    column: str,
    documents: str = "line",
    column_names: list[str] | None = None,
) -> Records:
    """Documents from every file `source` names, as rows `{column: text}` that know their file and line.

    Args:
        source: a file, directory or glob, or a list of them.
        column: the text column of non-plain files, and the column name of the rows returned.
        documents: for plain text, "line" (one document per line) or "paragraph" (blank-line separated).
        column_names: header names for CSV/TSV files without one.

    Raises:
        HftkError: a missing or empty file, bytes that are not UTF-8, a missing or non-text column, a pattern
            matching nothing.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else ", ".join(map(str, source))
    return join_texts(name, [read_text_file(p, column, documents, column_names) for p in expand_paths(source)])


def read_text_file(
    path: Path, column: str, documents: str, column_names: list[str] | None, checked: Snapshot | None = None
) -> Records:
    """The documents of one file (as it was when `checked`, a snapshot taken earlier)."""
    if not is_plain(path):
        return read_column(path, column, column_names, checked)
    limit = checked.verify() if checked is not None else None
    numbered = list(plain_documents(path, documents, limit))
    return Records(str(path), [{column: t} for _, t in numbered], [n for n, _ in numbered], [column])


def join_texts(name: str, parts: list[Records]) -> Records:
    """The documents of several files as one Records, each still at its file and line."""
    if len(parts) == 1:
        return parts[0]
    starts = [0]
    for part in parts[:-1]:
        starts.append(starts[-1] + len(part))
    rows = [row for part in parts for row in part.rows]
    return RecordsView(name, rows, None, [parts[0].columns[0]], parts, starts)


def is_plain(path: Path) -> bool:
    return path.suffix.lower() in (*PLAIN_SUFFIXES, "")  # a file named without a suffix is plain text too


def read_column(path: Path, column: str, column_names: list[str] | None, checked: Snapshot | None = None) -> Records:
    """The text column of a data file (JSONL, CSV, Parquet, ...), every value checked to be non-empty text."""
    part = read_records(path, column_names=column_names, checked=checked)
    texts = part.column(column, "text")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise HftkError(f"{part.where(i)}: text must be a string, got {type(t).__name__} {t!r}")
    blank = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if blank is not None:
        raise HftkError(f"{part.where(blank)}: column {column!r} is empty; fill it or drop the row")
    # Rows reduced to the text: where() still names the same file and line or record.
    return Records(part.source, [{column: t} for t in texts], part.lines, [column])


def plain_documents(path: Path, documents: str, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(first line, text) of each document of a plain-text file (its first `limit` bytes), one at a time; an error
    for an empty file."""
    found = False
    if documents == "line":
        for n, line in read_lines(path, limit):
            text = line.strip()
            if text:
                found = True
                yield n, text
    else:  # paragraphs: runs of non-blank lines, kept with their line breaks
        current: list[str] = []
        start = 0
        for n, line in read_lines(path, limit):
            if line.strip():
                if not current:
                    start = n
                current.append(line.strip())
            elif current:
                found = True
                yield start, "\n".join(current)
                current = []
        if current:
            found = True
            yield start, "\n".join(current)
    if not found:
        raise HftkError(f"{path}: no text (the file is empty or blank); add text or leave the file out")


def held_out(records: Records, fraction: float, seed: int) -> tuple[Records, Records]:
    """(train, held-out): a seeded random `fraction` of the documents held out, each side in file order."""
    n = len(records)
    held = held_out_indices(n, fraction, seed, records.source)
    return subset(records, [i for i in range(n) if i not in held]), subset(records, sorted(held))


def held_out_indices(n: int, fraction: float, seed: int, source: str) -> frozenset[int]:
    """Which of `n` documents a seeded `validation_fraction` holds out (the same for records and corpora)."""
    k = round(n * fraction)
    if k < 1 or k >= n:
        raise HftkError(
            f"{source}: {n} documents; validation_fraction {fraction} leaves "
            f"{'no' if k < 1 else 'all'} documents for validation; change it or name a validation file"
        )
    return frozenset(random.Random(seed).sample(range(n), k))


# ------------------------------------------------------------------------------------------------ packing


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


def pack(tokenizer: Any, texts: Sequence[str], block_size: int) -> dict[str, list[list[int]]]:
    """Tokenise documents once and cut the joined stream into blocks of `block_size` tokens.

    Stream: doc1 SEP doc2 SEP ... ; each block is prefix + the next slice of the stream + suffix, so every block
    but the last is exactly `block_size` long. `word_ids` give each token its word within the block (0, 1, ...;
    tokens of one word share it, also where the word started in the previous block) and -1 for special tokens,
    which are never masked.

    Returns:
        Columns `input_ids`, `attention_mask` and `word_ids`, one row per block.
    """
    template = Template.of(tokenizer)
    ids = np.empty(0, dtype=np.int64)
    words = np.empty(0, dtype=np.int64)
    parts_ids, parts_words, next_word = [], [], 0
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        batch_ids, batch_words, count = stream_of(tokenizer, texts[start : start + _TOKENIZE_BATCH], template)
        if parts_ids:  # the separator between this batch's first document and the previous one's last
            parts_ids.append(np.asarray(template.separator, dtype=np.int64))
            parts_words.append(np.full(len(template.separator), -1, dtype=np.int64))
        parts_ids.append(batch_ids)
        parts_words.append(np.where(batch_words >= 0, batch_words + next_word, -1))
        next_word += count
    if parts_ids:
        ids, words = np.concatenate(parts_ids), np.concatenate(parts_words)
    return {k: [row.tolist() for row in v] for k, v in blocks(ids, words, block_size, template).items()}


def stream_of(tokenizer: Any, texts: Sequence[str], template: Template) -> tuple[np.ndarray, np.ndarray, int]:
    """(token ids, word ids, number of words) of documents joined with the separator, in array operations.

    Word ids count on across documents (doc 2's first word follows doc 1's last); specials get -1.
    """
    enc = tokenizer(list(texts), add_special_tokens=False, verbose=False)
    docs = enc["input_ids"]
    n = len(docs)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 0
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
    return ids, out_words, int((per_doc + 1).sum())


def blocks(ids: np.ndarray, words: np.ndarray, block_size: int, template: Template) -> dict[str, list[np.ndarray]]:
    """A token stream cut into blocks of `block_size`, each wrapped in the template's special tokens; word ids
    renumbered 0, 1, ... within each block (-1 stays)."""
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
    return out


# ------------------------------------------------------------------------------------------------ batching


@dataclass
class Masking:
    """Masked-LM corruption: `probability` of the tokens (or whole words) chosen; of those, `mask` become the
    mask token, `random` a random token, the rest stay as they are (BERT: 0.15, 0.8, 0.1)."""

    probability: float = 0.15
    mask: float = 0.8
    random: float = 0.1
    whole_word: bool = False


class BlockCollator:
    """Stacks packed blocks (padding only a shorter last block) and makes the labels.

    Causal LM: labels are the inputs (the model shifts them). Masked LM: tokens are chosen anew for every batch,
    from a generator seeded by `seed` and the batch's own token ids, or within `seeded(seed)` from one generator,
    to draw the same masks each time (evaluations are then comparable).

    Why the batch seeds its masks: the loader collates a batch ahead of the step that trains on it, and a resumed
    run skips the batches it already trained on. Masks drawn from the global RNG (which Trainer saves and restores
    for dropout) depended on that timing: a resumed run masked its first batches otherwise. Seeded by the batch,
    they are the same whenever it is drawn; an epoch reshuffles the blocks, so each epoch's batches are new.
    """

    def __init__(
        self, tokenizer: Any, masking: Masking | None = None, pad_to_multiple_of: int | None = None, seed: int = 0
    ) -> None:
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.masking = masking
        self.mask_id = tokenizer.mask_token_id
        if masking is not None and self.mask_id is None:
            raise HftkError(f"{tokenizer.name_or_path}: the tokenizer has no mask token; masked-lm needs one")
        self.vocab_size = len(tokenizer)
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.generator = None

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        import torch

        saved, self.generator = self.generator, torch.Generator().manual_seed(seed)
        try:
            yield
        finally:
            self.generator = saved

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of

        def stack(name: str, value: int) -> torch.Tensor:
            out = torch.full((len(features), width), value, dtype=torch.long)
            for row, f in enumerate(features):
                out[row, : len(f[name])] = torch.as_tensor(f[name], dtype=torch.long)
            return out

        input_ids = stack("input_ids", self.pad_id)
        attention_mask = stack("attention_mask", 0)
        if self.masking is None:
            labels = input_ids.masked_fill(attention_mask == 0, -100)
            return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if "word_ids" in features[0]:
            word_ids = stack("word_ids", -1)
        else:  # rows not from pack() (no word ids): every token but the special ones is its own word
            special = torch.isin(input_ids, torch.tensor(self.special_ids)) | (attention_mask == 0)
            word_ids = torch.arange(width).expand_as(input_ids).masked_fill(special, -1)
        input_ids, labels = self.mask(input_ids, word_ids, self.generator or self._batch_generator(input_ids))
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _batch_generator(self, input_ids: Any) -> Any:
        """A generator seeded by `seed` and the batch's token ids (see the class docstring)."""
        import torch

        digest = hashlib.blake2b(input_ids.numpy().tobytes(), digest_size=8, key=str(self.seed).encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)

    def mask(self, input_ids: Any, word_ids: Any, generator: Any = None) -> tuple[Any, Any]:
        """(corrupted inputs, labels): labels hold the original token where one was chosen, else -100.

        Words are chosen with the masking probability, then all their tokens are (whole-word); per token, every
        token is its own word. A row where nothing was chosen gets one word, so no batch has an empty loss.
        Draws from `generator`, else the collator's own (`seeded`), else the global torch RNG.
        """
        import torch

        m, g = self.masking, generator or self.generator
        assert m is not None
        candidates = word_ids >= 0
        if not m.whole_word:  # every maskable token is its own word
            word_ids = torch.where(candidates, torch.arange(word_ids.shape[1]).expand_as(word_ids), -1)
        n_words = int(word_ids.max()) + 1 if candidates.any() else 1
        chosen_word = torch.rand(word_ids.shape[0], n_words, generator=g) < m.probability
        chosen = chosen_word.gather(1, word_ids.clamp(min=0)) & candidates
        empty = ~chosen.any(1) & candidates.any(1)
        if empty.any():  # the word of one random candidate token, for rows with nothing chosen
            score = torch.rand(word_ids.shape, generator=g).masked_fill(~candidates, -1.0)
            word = word_ids.gather(1, score.argmax(1, keepdim=True))
            chosen = chosen | ((word_ids == word) & candidates & empty.unsqueeze(1))
        labels = input_ids.masked_fill(~chosen, -100)
        draw = torch.rand(input_ids.shape, generator=g)
        to_mask = chosen & (draw < m.mask)
        to_random = chosen & (draw >= m.mask) & (draw < m.mask + m.random)
        corrupted = input_ids.masked_fill(to_mask, self.mask_id)
        random_ids = torch.randint(self.vocab_size, input_ids.shape, generator=g)
        corrupted = torch.where(to_random, random_ids, corrupted)
        return corrupted, labels


# ------------------------------------------------------------------------------------------------ scoring

_LOGITS_BUDGET = 2**25  # vocabulary logits per forward call when scoring (128 MiB in float32)


def nll_per_row(model: Any, batch: dict[str, Any], labels: Any, *, shift: bool) -> np.ndarray:
    """(summed negative log-likelihood, predicted tokens) of each row, as float64 [B, 2]: perplexity's parts.

    A language model's logits are the size of its vocabulary at every position (a batch of 64 blocks of 128
    tokens with BERT's 30,522: 1 GB, and as much again for the loss), so they are never held whole: the
    vocabulary projection (the model's output embeddings) sees only the positions that are scored (masked LM:
    some 15 %), and rows go through the model as many at a time as keep those logits within `_LOGITS_BUDGET`.
    Until a model's head is seen to take the hook (once per model), the rows are counted whole. `shift`:
    causal LM, where position t predicts token t + 1.
    """
    import torch

    inner = getattr(model, "module", model)  # DDP's wrapper forwards to the model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    labels = labels.cpu()
    if shift:  # what each position predicts: the next token (none after the last)
        labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], 1)
    scored = labels != -100
    rows, width = labels.shape
    per_row = int(scored.sum(1).max()) if getattr(inner, "_hftk_scored_head", False) else width
    out = torch.zeros(rows, 2, dtype=torch.float64)
    start = 0
    while start < rows:
        step = max(1, _LOGITS_BUDGET // (max(per_row, 1) * inner.config.vocab_size))
        part = {k: v[start : start + step] for k, v in batch.items()}
        picked = scored[start : start + step]

        def only_scored(module: Any, args: tuple, picked: Any = picked) -> tuple | None:
            hidden = args[0]
            return (hidden[picked.to(hidden.device)], *args[1:]) if hidden.shape[:2] == picked.shape else None

        hook = head.register_forward_pre_hook(only_scored) if head is not None else None
        try:
            logits = model(**part).logits
        finally:
            if hook is not None:
                hook.remove()
        if logits.dim() == 3:  # a head the hook did not reach projected every position
            logits = logits[picked.to(logits.device)]
        elif not getattr(inner, "_hftk_scored_head", False):  # it did: count the scored positions from now on
            inner._hftk_scored_head = True
            per_row = int(scored.sum(1).max())
        if len(logits):
            targets = labels[start : start + step][picked].to(logits.device)
            losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            out[start : start + step, 0].index_add_(0, picked.nonzero()[:, 0], losses.double().cpu())
        out[start : start + step, 1] = picked.sum(1).double()
        start += step
    return out.numpy()
