"""Tiny, real checkpoints built from real text in seconds, for tests and demos that must run offline.

A Tohoku-style Japanese BERT (`cl-tohoku/bert-base-japanese-v3` layout: vocab.txt, the same tokenizer_config.json
keys and values, a `BertForMaskedLM` in safetensors) small enough to build on the fly, so the Japanese tokenizer
and the tasks can be checked against the real `BertJapaneseTokenizer` without a download.

A Japanese GPT-2 in the layout of `rinna/japanese-gpt2-small` (sentencepiece spiece.model read by T5Tokenizer).

GPT-2 and BART in the layout of `openai-community/gpt2` and `facebook/bart-base`: a byte-level BPE tokenizer
(vocab.json + merges.txt, trained here with `tokenizers` on real English text shipped in data/), the same
tokenizer_config.json keys, and a small `GPT2LMHeadModel` / `BartForConditionalGeneration` in safetensors.
"""

from __future__ import annotations

import functools
import json
import os
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hftk.errors import HftkError
from hftk.files import scratch
from hftk.models.mecab import mecab_tagger

__all__ = [
    "FIXTURES",
    "JA_TEXT_DIR",
    "build_bart_fixture",
    "build_bert_japanese_fixture",
    "build_fixture",
    "build_gpt2_fixture",
    "build_gpt2_japanese_fixture",
    "japanese_sample_texts",
]

JA_TEXT_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "ja"
EN_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "en"
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
    import torch
    from transformers import BertConfig, BertForMaskedLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tagger = mecab_tagger()
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


# ------------------------------------------------------------------------------------------ GPT-2 and BART

_GPT2_EOS = "<|endoftext|>"
# facebook/bart-base: these four first (ids 0-3), <mask> last, as in its vocab.json.
_BART_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
_BART_MASK = "<mask>"


def english_sample_texts(limit: int = 1500) -> list[str]:
    """Real English prose for the GPT-2 tokenizer: the first `limit` paragraphs of *Emma* in data/en/gutenberg."""
    lines = (EN_DATA_DIR / "gutenberg" / "austen_emma.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines[:limit] if line.strip()]


def dialogsum_sample_texts() -> list[str]:
    """Dialogues and summaries of the DialogSum rows in data/en/dialogsum, for the BART tokenizer."""
    texts = []
    for name in ("validation.jsonl", "test_head100.jsonl"):
        for line in (EN_DATA_DIR / "dialogsum" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row["document"], row["summary"]]
    return texts


def _train_byte_level_bpe(texts: list[str], vocab_size: int, specials: list[str]) -> tuple[dict[str, int], str]:
    """(vocab, merges.txt text) of a byte-level BPE learnt from `texts`; `specials` get the first ids.

    `tokenizers`' BPE trainer is deterministic (ties between equal counts are broken by the pair itself), so the
    same text gives the same files.
    """
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = ["#version: 0.2"] + [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return model["vocab"], "\n".join(merges) + "\n"


def _write_bpe(out: Path, vocab: dict[str, int], merges: str, tokenizer_config: dict) -> None:
    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    (out / "vocab.json").write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text(merges, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")


def build_gpt2_fixture(out_dir: str | os.PathLike, *, vocab_size: int = 2000, n_positions: int = 256) -> Path:
    """Write a tiny GPT-2 checkpoint (openai-community/gpt2 layout) to `out_dir` and return its path.

    Byte-level BPE learnt from Austen's *Emma*, `<|endoftext|>` as the last id (bos = eos = unk, no pad token, as
    GPT-2); tokenizer_config.json holds only `model_max_length`, as gpt2's does. The model is a seeded
    `GPT2LMHeadModel` (2 layers, width 64): the same call gives the same files.
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _train_byte_level_bpe(english_sample_texts(), vocab_size - 1, [])
    vocab[_GPT2_EOS] = len(vocab)
    _write_bpe(out, vocab, merges, {"model_max_length": n_positions})
    eos = vocab[_GPT2_EOS]
    return _save_tiny_gpt2(out, len(vocab), n_positions, bos_token_id=eos, eos_token_id=eos)


def _save_tiny_gpt2(out: Path, vocab_size: int, n_positions: int, **token_ids: int) -> Path:
    """A seeded `GPT2LMHeadModel` (2 layers, width 64) saved as safetensors in `out`: the same call, the same file."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=64, n_layer=2, n_head=2, **token_ids)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    return out


def build_bart_fixture(out_dir: str | os.PathLike, *, vocab_size: int = 2000, max_positions: int = 512) -> Path:
    """Write a tiny BART checkpoint (facebook/bart-base layout) to `out_dir` and return its path.

    Byte-level BPE learnt from the DialogSum dialogues and summaries in data/en/dialogsum, with bart-base's special
    tokens (<s> <pad> </s> <unk> = 0-3, <mask> last) and the tokenizer_config.json keys BartTokenizer checkpoints
    carry. The model is a seeded `BartForConditionalGeneration` (2+2 layers, width 64).
    """
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _train_byte_level_bpe(dialogsum_sample_texts(), vocab_size - 1, _BART_SPECIALS)
    vocab[_BART_MASK] = len(vocab)
    tokenizer_config = {
        "add_prefix_space": False,
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "errors": "replace",
        "mask_token": _BART_MASK,
        "model_max_length": max_positions,
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "tokenizer_class": "BartTokenizer",
        "trim_offsets": True,
        "unk_token": "<unk>",
    }
    _write_bpe(out, vocab, merges, tokenizer_config)
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(vocab),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=max_positions,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=0,
        forced_eos_token_id=2,
    )
    BartForConditionalGeneration(config).save_pretrained(out, safe_serialization=True)
    return out


# ------------------------------------------------------------------------------------------ Japanese GPT-2

# tokenizer_config.json of rinna/japanese-gpt2-small: a sentencepiece unigram model (spiece.model) read by
# T5Tokenizer, lower-cased, with BERT-style extra specials. Its special_tokens_map.json holds the same tokens.
_RINNA_SPECIALS = {
    "bos_token": "<s>",
    "cls_token": "[CLS]",
    "eos_token": "</s>",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "<unk>",
}
_RINNA_CONFIG = {
    "additional_special_tokens": [],
    **_RINNA_SPECIALS,
    "do_lower_case": True,
    "extra_ids": 0,
    "sp_model_kwargs": {},
    "tokenizer_class": "T5Tokenizer",
}


def build_gpt2_japanese_fixture(out_dir: str | os.PathLike, *, vocab_size: int = 2000, n_positions: int = 256) -> Path:
    """Write a tiny Japanese GPT-2 checkpoint (rinna/japanese-gpt2-small layout) to `out_dir` and return its path.

    A sentencepiece unigram model (spiece.model) learnt from the shipped Japanese text, with rinna's special tokens
    and tokenizer_config.json keys (`T5Tokenizer`), and a seeded `GPT2LMHeadModel` (2 layers, width 64). Needs the
    `sentencepiece` package, as the real checkpoint's tokenizer does.
    """
    import io

    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(japanese_sample_texts()),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=0.9995,
        # rinna's ids: [PAD] 0, <s> 1, </s> 2, then <unk>; the BERT-style specials as user-defined pieces.
        pad_id=0,
        pad_piece="[PAD]",
        bos_id=1,
        eos_id=2,
        unk_id=3,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        num_threads=1,  # one thread: the same pieces on every run
        minloglevel=2,
    )
    (out / "spiece.model").write_bytes(model.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps(_RINNA_CONFIG, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(_RINNA_SPECIALS, indent=2) + "\n", encoding="utf-8")
    return _save_tiny_gpt2(out, vocab_size, n_positions, bos_token_id=1, eos_token_id=2, pad_token_id=0)


# ------------------------------------------------------------------------------------------ `hftk fixture`

# KIND -> (builder, the hub checkpoint whose layout it copies): what `hftk fixture KIND DIR` writes.
FIXTURES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "bert-japanese": (build_bert_japanese_fixture, "cl-tohoku/bert-base-japanese-v3"),
    "bert-japanese-char": (
        functools.partial(build_bert_japanese_fixture, char=True),
        "cl-tohoku/bert-base-japanese-char-v3",
    ),
    "gpt2": (build_gpt2_fixture, "openai-community/gpt2"),
    "gpt2-japanese": (build_gpt2_japanese_fixture, "rinna/japanese-gpt2-small"),
    "bart": (build_bart_fixture, "facebook/bart-base"),
}


def build_fixture(kind: str, out_dir: str | os.PathLike) -> Path:
    """Write the tiny offline stand-in of one hub checkpoint's layout (`FIXTURES`) to a new folder `out_dir`.

    The folder is built aside and moved into place by one rename, so an interrupted build leaves nothing half-made,
    and a folder that already holds files is never written into.

    Raises:
        HftkError: an unknown `kind`, or `out_dir` exists and is not an empty folder.
    """
    if kind not in FIXTURES:
        raise HftkError(f"fixture {kind!r}: unknown kind; choose one of {', '.join(FIXTURES)}")
    out = Path(out_dir).expanduser()
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise HftkError(f"{out}: already exists and is not an empty folder; give a new folder for the fixture")

    def unwritable(e: OSError) -> HftkError:
        return HftkError(f"{out}: cannot write there ({e.strerror}); give a folder you can write to")

    out.parent.mkdir(parents=True, exist_ok=True)
    with scratch(out.parent.resolve(), out.name, unwritable) as work:
        FIXTURES[kind][0](work / "model")
        os.replace(work / "model", out)  # onto a missing or empty folder: one rename
    return out
