"""Tiny, real checkpoints built from real text in seconds, for tests and demos that must run offline.

A Tohoku-style Japanese BERT (`cl-tohoku/bert-base-japanese-v3` layout: vocab.txt, the same tokenizer_config.json
keys and values, a `BertForMaskedLM` in safetensors) small enough to build on the fly, so the Japanese tokenizer
and the tasks can be checked against the real `BertJapaneseTokenizer` without a download.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from pathlib import Path

__all__ = ["JA_TEXT_DIR", "build_bert_japanese_fixture", "japanese_sample_texts"]

JA_TEXT_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "ja"
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# tokenizer_config.json of cl-tohoku/bert-base-japanese-v3 (the -char-v3 one says "character").
_TOHOKU_V3_CONFIG = {
    "tokenizer_class": "BertJapaneseTokenizer",
    "model_max_length": 512,
    "do_lower_case": False,
    "word_tokenizer_type": "mecab",
    "subword_tokenizer_type": "wordpiece",
    "mecab_kwargs": {"mecab_dic": "unidic_lite"},
}


def japanese_sample_texts() -> list[str]:
    """The real Japanese texts shipped in tests/data/ja (novel lines, JNLI sentences, chABSA sentences)."""
    texts = (JA_TEXT_DIR / "wagahai_wa_neko_de_aru.txt").read_text(encoding="utf-8").splitlines()
    for line in (JA_TEXT_DIR / "jnli_valid_head.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["sentence1"], row["sentence2"]]
    for line in (JA_TEXT_DIR / "chabsa_sentiment_head.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["text"])
    return [t for t in texts if t]


def build_bert_japanese_fixture(out_dir: str | os.PathLike, *, char: bool = False, vocab_size: int = 4000) -> Path:
    """Write a tiny Tohoku-format Japanese BERT checkpoint to `out_dir` and return its path.

    The vocabulary is learnt from the MeCab (unidic_lite) words of the shipped text: WordPiece with `tokenizers`,
    or its most frequent characters for `char=True`. The model is a real `BertForMaskedLM` (hidden 64, 2 layers),
    seeded, so the same call gives the same files.

    Args:
        out_dir: Directory to write (created if missing).
        char: Build a `-char` checkpoint (`subword_tokenizer_type: character`).
        vocab_size: Vocabulary size, special tokens included (at most this many for `char=True`).
    """
    import fugashi
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from hftk.japanese import _mecab_args

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tagger = fugashi.GenericTagger(_mecab_args("unidic_lite", None))
    # Words as the tokenizer will see them: MeCab over NFKC text.
    sentences = [[w.surface for w in tagger(unicodedata.normalize("NFKC", t))] for t in japanese_sample_texts()]
    if char:
        counts = Counter(c for words in sentences for w in words for c in w)
        # Most frequent first, ties by code point: deterministic.
        chars = sorted(counts, key=lambda c: (-counts[c], c))[: vocab_size - len(_SPECIALS)]
        vocab = _SPECIALS + sorted(chars)
    else:
        vocab = _train_wordpiece(sentences, vocab_size)
    (out / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    config = dict(_TOHOKU_V3_CONFIG, subword_tokenizer_type="character" if char else "wordpiece")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
            pad_token_id=0,
        )
    )
    model.save_pretrained(out, safe_serialization=True)
    return out


def _train_wordpiece(sentences: list[list[str]], vocab_size: int) -> list[str]:
    """A WordPiece vocabulary: characters seen twice or more (alone and as `##` pieces), then the most frequent words.

    Not `tokenizers`' WordPieceTrainer: it breaks ties between equal counts differently from run to run. Characters
    seen once stay out on purpose, so real text has [UNK]s, as with a real checkpoint.
    """
    words = Counter(w for ws in sentences for w in ws)
    chars = Counter()
    for word, n in words.items():
        for c in word:
            chars[c] += n
    by_freq = sorted((c for c in chars if chars[c] >= 2), key=lambda c: (-chars[c], c))
    vocab = list(_SPECIALS) + by_freq + ["##" + c for c in by_freq]
    for word in sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w)):
        if len(vocab) >= vocab_size:
            break
        vocab.append(word)
    return vocab[:vocab_size]
