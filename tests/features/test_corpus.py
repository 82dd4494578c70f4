"""Language-model corpora at scale (hftk/features/corpus.py): counting, packing in `datasets.map`, the cache,
streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hftk import HftkError, load_recipe, train
from hftk.data.text import held_out, plain_documents, read_texts
from hftk.features.cache import cache_root
from hftk.features.collators import BlockCollator
from hftk.features.corpus import (
    count_documents,
    held_out_corpus,
    packed_dataset,
    read_corpus,
    streamed_blocks,
)
from hftk.features.packing import pack
from hftk.models.loading import load_tokenizer

from ..helpers import DATA, ROOT

EMMA = DATA / "en/gutenberg/austen_emma.txt"


pytestmark = pytest.mark.usefixtures("own_cache")  # warm and cold are what each test makes them


def corpus_file(tmp_path: Path, lines: int, name: str = "corpus.txt") -> Path:
    texts = [t for t in EMMA.read_text(encoding="utf-8").splitlines() if t.strip()][:lines]
    path = tmp_path / name
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize(
    "text",
    ["x\n\n  \ny\nz", "\ufeffa\n\u3000\nb\n", "p1 l1\np1 l2\n\n\np2\n   \np3", "one", "a\r\nb\r\n\r\nc"],
)
@pytest.mark.parametrize("documents", ["line", "paragraph"])
def test_counting_finds_the_documents_the_reader_finds(tmp_path, text, documents):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8", newline="")
    assert count_documents(path, documents) == sum(1 for _ in plain_documents(path, documents))


def test_counting_names_the_bad_line_and_the_empty_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nstill fine\nbad \xff byte\n")
    with pytest.raises(HftkError, match=r"bad.txt:3: not UTF-8 \(byte 5 of the line\)"):
        read_corpus(str(bad), column="text")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(HftkError, match=r"empty\.txt: no text"):
        read_corpus(str(empty), column="text")


def test_corpus_reads_lazily_and_holds_out_the_same_documents(tmp_path):
    path = corpus_file(tmp_path, 400)
    corpus = read_corpus(str(path), column="text")
    eager = read_texts(str(path), column="text")
    assert len(corpus) == len(eager) == 400
    assert list(corpus.documents()) == [r["text"] for r in eager.rows]
    train_c, held_c = held_out_corpus(corpus, 0.1, seed=3)
    train_e, held_e = held_out(eager, 0.1, seed=3)
    assert list(held_c.documents()) == [r["text"] for r in held_e.rows]
    assert list(train_c.documents()) == [r["text"] for r in train_e.rows]
    assert held_c.whole().where(0) == held_e.where(0)  # rows and places exist when asked for


@pytest.mark.parametrize("name", ["corpus.txt", "corpus.jsonl"])
def test_a_corpus_grown_after_its_check_gives_the_documents_checked(tmp_path, tok, name, caplog):
    """Documents appended after `read_corpus` counted them (a bad line too) are never read: streaming, packing
    and evaluation get the documents checked, and the packed blocks' cache key is that of the checked bytes."""
    import logging

    from hftk.features.corpus import corpus_key

    path = corpus_file(tmp_path, 300, "corpus.txt")
    if name.endswith(".jsonl"):
        texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
        path = tmp_path / name
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    corpus = read_corpus(str(path), column="text")
    before, key = list(corpus.documents()), corpus_key(corpus, tok, 64, False)
    with open(path, "ab") as f:
        f.write(path.read_bytes() + b"\xff not UTF-8\n")
    with caplog.at_level(logging.WARNING, logger="hftk"):
        assert list(corpus.documents()) == before and len(corpus) == 300
        assert [r["text"] for r in corpus.whole().rows] == before
        assert corpus_key(corpus, tok, 64, False) == key
    assert any("grew since it was checked at start" in r.getMessage() for r in caplog.records)
    with pytest.raises(HftkError, match=rf"{name}:601: not UTF-8"):  # what the next run checks
        read_corpus(str(path), column="text")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(HftkError, match=rf"{name}: changed since it was checked at start"):
        list(corpus.documents())


# ------------------------------------------------------------------------------------------------ packing


def test_packed_blocks_equal_pack_and_come_back_from_the_cache(tmp_path, tok, own_cache):
    path = corpus_file(tmp_path, 300)
    texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    corpus = read_corpus(str(path), column="text")
    cold, warm = packed_dataset(corpus, tok, 64, word_ids=True)
    assert not warm
    expected = pack(tok, texts, 64)
    assert cold["input_ids"] == expected["input_ids"] and cold["word_ids"] == expected["word_ids"]
    again, warm = packed_dataset(read_corpus(str(path), column="text"), tok, 64, word_ids=True)
    assert warm and again["input_ids"] == expected["input_ids"]
    assert len(list(cache_root().iterdir())) == 1 and cache_root().parent == own_cache

    # Any change to what the blocks depend on builds anew: the bytes, the block size, the columns kept.
    assert not packed_dataset(corpus, tok, 32, word_ids=True)[1]
    assert not packed_dataset(corpus, tok, 64, word_ids=False)[1]
    assert "word_ids" not in packed_dataset(corpus, tok, 64, word_ids=False)[0].column_names
    with open(path, "a", encoding="utf-8") as f:
        f.write("One more paragraph at the end.\n")
    changed, warm = packed_dataset(read_corpus(str(path), column="text"), tok, 64, word_ids=True)
    assert not warm and changed["input_ids"] != expected["input_ids"]


def test_another_tokenizer_misses_the_cache(tmp_path, tok, gpt2_fixture):
    corpus = read_corpus(str(corpus_file(tmp_path, 100)), column="text")
    packed_dataset(corpus, tok, 64, word_ids=False)
    assert not packed_dataset(corpus, load_tokenizer(str(gpt2_fixture)), 64, word_ids=False)[1]


def test_no_cache_keeps_nothing(tmp_path, tok):
    corpus = read_corpus(str(corpus_file(tmp_path, 100)), column="text")
    dataset, warm = packed_dataset(corpus, tok, 64, word_ids=False, cache=False)
    assert not warm and len(dataset) > 0
    assert not cache_root().exists()  # the work folder was a temporary one elsewhere


def test_two_processes_pack_what_one_packs(tmp_path, tok, monkeypatch):
    import hftk.features.corpus

    monkeypatch.setattr(hftk.features.corpus, "_DOCS_PER_PROCESS", 50)  # 400 documents: worth two processes here
    monkeypatch.setattr(hftk.features.corpus, "_MAP_BATCH", 100)
    corpus = read_corpus(str(corpus_file(tmp_path, 400)), column="text")
    one = packed_dataset(corpus, tok, 64, word_ids=True, num_proc=1, cache=False)[0]
    two = packed_dataset(corpus, tok, 64, word_ids=True, num_proc=2, cache=False)[0]
    assert one["input_ids"] == two["input_ids"] and one["word_ids"] == two["word_ids"]
    # Each batch of 100 documents is its own stream: at most one shorter block per batch.
    lengths = np.array([len(b) for b in one["input_ids"]])
    assert (lengths < 64).sum() <= 4


def test_stream_yields_the_cached_blocks_in_order(tmp_path, tok):
    corpus = read_corpus(str(corpus_file(tmp_path, 300)), column="text")
    cached = packed_dataset(corpus, tok, 64, word_ids=True)[0]
    streamed = list(streamed_blocks(corpus, tok, 64, word_ids=True))
    assert [b["input_ids"] for b in streamed] == cached["input_ids"]
    assert [b["word_ids"] for b in streamed] == cached["word_ids"]


# ------------------------------------------------------------------------------------------------ training


def mlm_overrides(corpus: Path, **extra) -> dict:
    return {
        "data.train": str(corpus),
        "data.validation_fraction": None,
        "training.per_device_train_batch_size": 8,
        "training.logging_steps": 1,
        "training.warmup_steps": 0,
        "training.lr_scheduler_type": "constant",
        **extra,
    }


def test_streaming_needs_max_steps_and_says_where(tmp_path):
    # Set on the command line: the command line is named, not the recipe file.
    with pytest.raises(HftkError, match=r"^--set data.streaming: true needs training.max_steps"):
        load_recipe(ROOT / "recipes/mlm-domain-en.yaml", {"data.streaming": True})
    # Written in the file: its line.
    recipe = tmp_path / "recipe.yaml"
    text = (ROOT / "recipes/mlm-domain-en.yaml").read_text(encoding="utf-8")
    recipe.write_text(text.replace("data:\n", "data:\n  streaming: true\n", 1), encoding="utf-8")
    with pytest.raises(HftkError, match=r"recipe.yaml:\d+: data.streaming: true needs training.max_steps"):
        load_recipe(recipe)


def test_streamed_training_resumes_on_the_blocks_where_it_stopped(tmp_path, monkeypatch):
    """4 steps straight vs 2 steps, then --resume to 4: the resumed run trains steps 3 and 4 on the same blocks
    (Trainer replays the stream and skips what was used). Not checked bit for bit, as the non-streamed resume is."""
    batches: list[tuple] = []
    collate = BlockCollator.__call__

    def spy(self, features):
        if len(features) == 8:  # training batches (the start-up loss probe collates 2 rows)
            batches.append(tuple(tuple(f["input_ids"]) for f in features))
        return collate(self, features)

    monkeypatch.setattr(BlockCollator, "__call__", spy)
    corpus = corpus_file(tmp_path, 300)
    recipe = ROOT / "recipes/mlm-domain-en.yaml"
    settings = {"data.streaming": True, "training.save_strategy": "steps", "training.save_steps": 2}

    def run(steps: int, out: str, **kw):
        overrides = mlm_overrides(corpus, **settings, **{"training.max_steps": steps})
        return train(recipe, overrides=overrides, output_dir=tmp_path / out, **kw)

    straight = run(4, "straight")
    straight_batches = batches[:4]
    batches.clear()
    run(2, "b")
    assert batches[:2] == straight_batches[:2]
    batches.clear()
    resumed = run(4, "b", resume=True)
    assert resumed.start_step == 2 and resumed.global_step == straight.global_step == 4
    # The two used batches are read again and skipped, then steps 3 and 4 train on the straight run's blocks
    # (the loader may read one batch ahead).
    assert batches[:2] == straight_batches[:2] and batches[2:4] == straight_batches[2:]
    assert np.isfinite(resumed.metrics["train"]["train_loss"])


def test_two_ranks_tokenise_once(tmp_path):
    """Under torchrun the first process builds the cache; the other reads it (one 'tokenised' line in all)."""
    corpus = corpus_file(tmp_path, 300)
    recipe = tmp_path / "recipe.yaml"
    raw = yaml.safe_load((ROOT / "recipes/mlm-domain-en.yaml").read_text(encoding="utf-8"))
    raw["data"] = {"train": str(corpus)}
    raw["training"] = {"max_steps": 2, "per_device_train_batch_size": 4, "save_strategy": "no"}
    recipe.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
    }
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "hftk", "train", str(recipe), "--output", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "blocks" in line and "hftk[rank" in line]
    assert sum("tokenised" in line for line in lines) == 1, lines
    assert sum("from the cache" in line for line in lines) == 1, lines
    assert json.loads((tmp_path / "o/metrics.json").read_text())["device"]["world_size"] == 2


def test_a_corpus_gives_its_documents_as_records_a_batch_at_a_time_each_at_its_file_and_line(tmp_path):
    plain = corpus_file(tmp_path, 30)
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(12)), encoding="utf-8")
    sources = [str(plain), str(jsonl)]
    corpus, eager = read_corpus(sources, column="text"), read_texts(sources, column="text")
    for lazy, held in ((corpus, eager), (held_out_corpus(corpus, 0.3, 1)[1], held_out(eager, 0.3, 1)[1])):
        parts = list(lazy.batches(5))
        assert [len(p) for p in parts[:-1]] == [5] * (len(parts) - 1)
        assert [r for p in parts for r in p.rows] == held.rows == lazy.whole().rows
        assert [p.where(i) for p in parts for i in range(len(p))] == [held.where(i) for i in range(len(held))]
