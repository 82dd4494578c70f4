"""Shared fixtures: real MiniLM weights, real data rows from data/, one small trained model per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .helpers import DATA, MINILM, ROOT, head, sst2_recipe

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tokenised corpora go to a cache of this test session, not the user's ~/.cache (tests start cold).
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hftk-test-datasets-"))
# trackio's runs go to a store of this test session (trackio reads TRACKIO_DIR once, when first imported).
os.environ.setdefault("TRACKIO_DIR", tempfile.mkdtemp(prefix="hftk-test-trackio-"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """This test's own HF_DATASETS_CACHE, empty: the features cache starts cold."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tok():
    """MiniLM's tokenizer (uncased WordPiece)."""
    from hftk.models.loading import load_tokenizer

    return load_tokenizer(MINILM)


@pytest.fixture(scope="session")
def sst2_small(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sst2")
    return {
        "train": head(DATA / "en/sst2/train.tsv", d / "train.tsv", 1200),
        "validation": head(DATA / "en/sst2/dev.tsv", d / "dev.tsv", 300),
    }


@pytest.fixture(scope="session")
def sst2_model(sst2_small, tmp_path_factory) -> Path:
    """MiniLM fine-tuned for one epoch on 1,200 real SST-2 rows: shared by the predict/evaluate tests."""
    from hftk import train

    out = tmp_path_factory.mktemp("runs") / "sst2"
    train(sst2_recipe(sst2_small, out))
    return out


@pytest.fixture(scope="session")
def ja_fixture(tmp_path_factory) -> Path:
    """A tiny Tohoku-format Japanese BERT (MeCab + WordPiece) built from the real text in tests/data/ja."""
    from hftk.testing.fixtures import build_bert_japanese_fixture

    return build_bert_japanese_fixture(tmp_path_factory.mktemp("ja") / "bert-ja")


@pytest.fixture(scope="session")
def ja_char_fixture(tmp_path_factory) -> Path:
    """The same, with a character vocabulary (`subword_tokenizer_type: character`, as the -char checkpoints)."""
    from hftk.testing.fixtures import build_bert_japanese_fixture

    return build_bert_japanese_fixture(tmp_path_factory.mktemp("ja") / "bert-ja-char", char=True)


@pytest.fixture(scope="session")
def jsick_model(ja_fixture, tmp_path_factory) -> Path:
    """The Japanese NLI recipe (JSICK pairs) trained briefly on the Tohoku-format fixture."""
    from hftk import train

    d = tmp_path_factory.mktemp("jsick")
    overrides = {
        "model": str(ja_fixture),
        "data.train": str(head(DATA / "ja/jsick/train.tsv", d / "train.tsv", 400)),
        "data.validation": str(head(DATA / "ja/jsick/test_head1000.tsv", d / "dev.tsv", 100)),
        "training.num_train_epochs": 1,
        "training.learning_rate": 5e-4,
    }
    return train(ROOT / "recipes/jsick-ja.yaml", overrides=overrides, output_dir=d / "model").output_dir


@pytest.fixture(scope="session")
def gpt2_fixture(tmp_path_factory) -> Path:
    """A tiny GPT-2 (openai-community/gpt2 layout), byte-level BPE learnt from Austen's Emma in data/en/gutenberg."""
    from hftk.testing.fixtures import build_gpt2_fixture

    return build_gpt2_fixture(tmp_path_factory.mktemp("gpt2") / "gpt2")


@pytest.fixture(scope="session")
def bart_fixture(tmp_path_factory) -> Path:
    """A tiny BART (facebook/bart-base layout), byte-level BPE learnt from the DialogSum rows in data/en/dialogsum."""
    from hftk.testing.fixtures import build_bart_fixture

    return build_bart_fixture(tmp_path_factory.mktemp("bart") / "bart")


@pytest.fixture(scope="session")
def gpt2_ja_fixture(tmp_path_factory) -> Path:
    """A tiny Japanese GPT-2 (rinna/japanese-gpt2-small layout), sentencepiece learnt from the text in tests/data/ja."""
    from hftk.testing.fixtures import build_gpt2_japanese_fixture

    return build_gpt2_japanese_fixture(tmp_path_factory.mktemp("gpt2-ja") / "gpt2-ja")


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """MiniLM's tokenizer (the same as `tok`), by the name the text tests use."""
    from hftk.models.loading import load_tokenizer

    return load_tokenizer(MINILM)


@pytest.fixture(scope="session")
def emma() -> list[str]:
    """The first 300 lines of Austen's Emma (Gutenberg), blank ones left out."""
    lines = (DATA / "en/gutenberg/austen_emma.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines[:300] if line.strip()]
