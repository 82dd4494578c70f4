"""Language-model corpora at scale: read once, checked in a streaming pass, packed in worker processes, cached.

A domain corpus can be gigabytes, so nothing here holds it whole in Python objects:

- `read_corpus` checks every document (UTF-8, empty files, the text column) one at a time and counts them; the
  `TextCorpus` it returns names files, not rows.
- `packed_dataset` streams the documents into an Arrow table (`Dataset.from_generator`), tokenises and packs them
  with a batched `datasets.map` over `num_proc` processes (array operations per batch, features/packing.py) that
  writes the blocks straight into the cache (features/cache.py), which later runs memory-map instead of tokenising
  again.
- The cache key is a hash of the files' bytes, the tokenizer, the block size and what the task keeps: any change
  to one of them builds anew.

Blocks are packed within each map batch of `_MAP_BATCH` documents, so one block per batch may be shorter than
`max_length`; for all else packing is as `text.pack` (whole word ids carried across blocks, the template's specials).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hftk.data.records import BATCH, Records, index_digest, place
from hftk.data.snapshot import Snapshot
from hftk.data.text import expand_paths, held_out_indices, is_plain, plain_documents, read_column, read_text_file
from hftk.features.cache import cached_map, key, tokenizer_fingerprint
from hftk.features.packing import Template, blocks, stream_of

_CHUNK_BYTES = 1 << 24  # read and decoded at once when counting documents
_MAP_BATCH = 10_000  # documents packed together: one short block per batch at most
_DOCS_PER_PROCESS = 20_000  # below this many documents a worker process costs more than it saves


class TextCorpus:
    """The documents of some text files, read anew on each pass: training packs `documents()`, `batches` gives them
    as Records a batch at a time, and only `whole` holds them, all at once (small data, e.g. `hftk evaluate`).

    `checked` holds each file as `read_corpus` checked it: every later reading gets exactly those documents (a
    file appended to meanwhile is read up to its checked size; one changed otherwise is an error).
    `keep` selects documents by their index in the whole corpus (a held-out split), None keeps all.
    """

    def __init__(
        self,
        source: str,
        files: list[Path],
        *,
        column: str,
        documents: str,
        column_names: list[str] | None,
        count: int,
        checked: list[Snapshot],
        keep: frozenset[int] | None = None,
        drop: frozenset[int] | None = None,
    ) -> None:
        self.source = source
        self.files = files
        self.checked = checked
        self.text_column = column
        self.documents_mode = documents
        self.column_names = column_names
        self.total = count  # documents in the files, before keep/drop
        self.keep = keep
        self.drop = drop
        self.columns = [column]
        self._whole: Records | None = None

    def __len__(self) -> int:
        if self.keep is not None:
            return len(self.keep)
        return self.total - len(self.drop or ())

    def _selected(self, index: int) -> bool:
        return (self.keep is None or index in self.keep) and (self.drop is None or index not in self.drop)

    def documents(self) -> Iterator[str]:
        """Every selected document's text, in file order, one at a time."""
        return (text for *_, text in self._read())

    def batches(self, size: int = BATCH) -> Iterator[Records]:
        """The selected documents as Records of `size` rows `{column: text}`, each with its file and line."""
        documents = self._read()
        while chunk := list(itertools.islice(documents, size)):
            rows = [{self.text_column: text} for *_, text in chunk]
            places = [place(str(path), line, k) for path, line, k, _ in chunk]
            yield Records(self.source, rows, None, list(self.columns), places)

    def _read(self) -> Iterator[tuple[Path, int | None, int, str]]:
        """(file, line, index in the file, text) of every selected document, in file order."""
        index = 0
        for path, checked in zip(self.files, self.checked):
            if is_plain(path):
                found: Iterable[tuple[int | None, str]] = plain_documents(path, self.documents_mode, checked.verify())
            else:
                part = read_column(path, self.text_column, self.column_names, checked)
                lines = part.lines if part.lines is not None else itertools.repeat(None)
                found = zip(lines, (row[self.text_column] for row in part.rows))
            for k, (line, text) in enumerate(found):
                if self._selected(index):
                    yield path, line, k, text
                index += 1

    def whole(self) -> Records:
        """The selected documents as Records, read on first use and then held."""
        if self._whole is None:
            parts = [
                read_text_file(p, self.text_column, self.documents_mode, self.column_names, checked)
                for p, checked in zip(self.files, self.checked)
            ]
            whole = Records.join(self.source, parts)
            selected = self.keep is not None or self.drop is not None
            self._whole = whole.subset([i for i in range(self.total) if self._selected(i)]) if selected else whole
        return self._whole

    def select(
        self, keep: frozenset[int] | None = None, drop: frozenset[int] | None = None, source: str | None = None
    ) -> TextCorpus:
        return TextCorpus(
            source or self.source,
            self.files,
            column=self.text_column,
            documents=self.documents_mode,
            column_names=self.column_names,
            count=self.total,
            checked=self.checked,
            keep=keep,
            drop=drop,
        )


def read_corpus(
    source: str | os.PathLike | Sequence[str],
    *,
    column: str,
    documents: str = "line",
    column_names: list[str] | None = None,
) -> TextCorpus:
    """Every document `source` names, checked one at a time (the errors of `text.read_texts`), not kept."""
    files = expand_paths(source)
    checked = [Snapshot.take(path) for path in files]
    count = 0
    for path, snapshot in zip(files, checked):
        if is_plain(path):
            count += count_documents(path, documents, snapshot.size)
        else:
            count += len(read_column(path, column, column_names, snapshot))
    name = str(source) if isinstance(source, (str, os.PathLike)) else ", ".join(map(str, source))
    return TextCorpus(
        name, files, column=column, documents=documents, column_names=column_names, count=count, checked=checked
    )


def count_documents(path: Path, documents: str, limit: int | None = None) -> int:
    """How many documents `text.plain_documents` finds in the file, counted in large decoded chunks (about a
    second per gigabyte): the same documents, but no Python object per line kept or made beyond a chunk.

    Raises:
        HftkError: the file is not UTF-8 (at its line and byte, by `plain_documents`) or has no text.
    """
    count, carry, in_paragraph, first = 0, b"", False, True
    left = limit if limit is not None else -1  # bytes still to read; -1: to the end
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK_BYTES if left < 0 else min(_CHUNK_BYTES, left))
            left -= len(chunk) if left >= 0 else 0
            data = carry + chunk
            cut = len(data) if not chunk else data.rfind(b"\n") + 1
            carry = data[cut:]
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError:
                for _ in plain_documents(path, documents, limit):  # raises the located error
                    pass
                raise
            if first:
                text, first = text.removeprefix("\ufeff"), False
            lines = text.split("\n")
            if text.endswith("\n"):
                lines.pop()  # the empty piece after the last line break is no line
            if documents == "line":
                count += sum(1 for line in lines if line and not line.isspace())
            else:
                for line in lines:
                    blank = not line or line.isspace()
                    count += not blank and not in_paragraph
                    in_paragraph = not blank
            if not chunk:
                break
    if count == 0:
        for _ in plain_documents(path, documents, limit):  # raises the 'no text' error
            pass
    return count


def held_out_corpus(corpus: TextCorpus, fraction: float, seed: int) -> tuple[TextCorpus, TextCorpus]:
    """(train, held-out) as `text.held_out` draws them (same seed, same documents), without reading the text."""
    held = held_out_indices(len(corpus), fraction, seed, corpus.source)
    return corpus.select(drop=held), corpus.select(keep=held, source=f"{corpus.source} (held out)")


# ------------------------------------------------------------------------------------------------ packing


def packed_dataset(
    corpus: TextCorpus,
    tokenizer: Any,
    block_size: int,
    *,
    word_ids: bool,
    num_proc: int | None = None,
    cache: bool = True,
) -> tuple[Any, bool]:
    """(blocks as a memory-mapped `datasets.Dataset`, whether they came from the cache).

    Columns `input_ids`, `attention_mask` and, with `word_ids` (whole-word masking), `word_ids`.
    """
    from datasets import Dataset, Features, Value

    def documents(work: Path) -> Any:
        return Dataset.from_generator(
            _generate,
            gen_kwargs={"corpus": corpus},
            features=Features({"text": Value("string")}),
            cache_dir=str(work / "documents"),
        )

    procs = max(1, min(num_proc or os.cpu_count() or 1, len(corpus) // _DOCS_PER_PROCESS))
    return cached_map(
        corpus_key(corpus, tokenizer, block_size, word_ids),
        documents,
        _pack_batch,
        what=f"{corpus.source} (blocks)",
        enabled=cache,
        num_proc=procs,
        batched=True,
        batch_size=_MAP_BATCH,
        remove_columns=["text"],
        features=_block_features(word_ids),
        fn_kwargs={"tokenizer": tokenizer, "block_size": block_size, "word_ids": word_ids},
        desc="hftk: tokenising and packing",
    )


def streamed_blocks(corpus: TextCorpus, tokenizer: Any, block_size: int, *, word_ids: bool) -> Any:
    """The corpus as a `datasets.IterableDataset` of blocks packed on the fly, `_MAP_BATCH` documents at a time:
    memory does not grow with the corpus, and nothing is written to disk.

    The order is the files' (a stream is not shuffled). Trainer resumes a stream by reading and skipping the
    batches the interrupted run consumed, so a resumed run continues on the same blocks.
    """
    from datasets import IterableDataset

    return IterableDataset.from_generator(
        _stream_blocks,
        features=_block_features(word_ids),
        gen_kwargs={"corpus": corpus, "tokenizer": tokenizer, "block_size": block_size, "word_ids": word_ids},
    )


def _stream_blocks(corpus: TextCorpus, tokenizer: Any, block_size: int, word_ids: bool) -> Iterator[dict[str, Any]]:
    documents = corpus.documents()
    while batch := list(itertools.islice(documents, _MAP_BATCH)):
        out = _pack_batch({"text": batch}, tokenizer, block_size, word_ids)
        for i in range(len(out["input_ids"])):
            yield {k: v[i] for k, v in out.items()}


def _block_features(word_ids: bool) -> Any:
    """Blocks stored compactly: int32 ids (vocabularies stay below 2**31), int8 attention."""
    from datasets import Features, Sequence, Value

    columns = {"input_ids": Sequence(Value("int32")), "attention_mask": Sequence(Value("int8"))}
    if word_ids:
        columns["word_ids"] = Sequence(Value("int32"))
    return Features(columns)


def _generate(corpus: TextCorpus) -> Iterator[dict[str, str]]:
    for text in corpus.documents():
        yield {"text": text}


def _pack_batch(batch: dict[str, list[str]], tokenizer: Any, block_size: int, word_ids: bool) -> dict[str, Any]:
    template = Template.of(tokenizer)
    ids, words, _, _ = stream_of(tokenizer, batch["text"], template)
    out = blocks(ids, words, block_size, template)
    if not word_ids:
        del out["word_ids"]
    return out


def corpus_key(corpus: TextCorpus, tokenizer: Any, block_size: int, word_ids: bool) -> str:
    """Hash of everything the blocks depend on: the files' bytes, which documents, the tokenizer, the settings."""
    return key(
        {
            "what": "blocks",
            "files": [(str(p.resolve()), checked.digest()) for p, checked in zip(corpus.files, corpus.checked)],
            "documents": corpus.documents_mode,
            "column": corpus.text_column,
            "keep": index_digest(corpus.keep),
            "drop": index_digest(corpus.drop),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "block_size": block_size,
            "word_ids": word_ids,
            "batch": _MAP_BATCH,
        }
    )
