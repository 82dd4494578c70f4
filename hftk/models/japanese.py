"""A fast tokenizer for Tohoku-style Japanese BERT checkpoints (`BertJapaneseTokenizer`), with offsets.

transformers ships `BertJapaneseTokenizer` as a slow, Python-only tokenizer: no `offset_mapping`, no `word_ids()`,
so no token classification with offsets, no QA span mapping, no Japanese whole-word masking. This module rebuilds
it on the `tokenizers` library so that it gives the same ids as the slow one and the fast-tokenizer API on top:

- normaliser: NFKC, in Rust, which keeps the alignment to the original text (so offsets point into the text the
  user gave, not its normalised form). Two limits of that alignment: a token inside one character that NFKC
  expands ("…" -> "...") points at the whole character, and a character NFKC merged from a base and a mark
  ("ﾎﾞ" -> "ボ") is aligned to the base only, so a token ending there stops before the mark;
- pre-tokeniser: MeCab through fugashi, with the dictionary named in `mecab_kwargs`; one MeCab word is one word
  of `word_ids()`. It is Python, so it cannot live in `tokenizer.json` or be pickled by `tokenizers`: the object
  that holds the backend (`_Backend`) rebuilds it on unpickling;
- model: WordPiece from `vocab.txt`, or one token per character (BPE with no merges) for `-char` checkpoints;
- special tokens as added tokens matched in the raw text, as the slow tokenizer's trie does (JSQuAD contexts
  hold a literal `[SEP]`).

`save_pretrained` writes the checkpoint's own on-disk format (vocab.txt, tokenizer_config.json naming
`BertJapaneseTokenizer`), never a tokenizer.json that could not hold the MeCab step.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import PreTrainedTokenizerFast
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from hftk.errors import HftkError
from hftk.models.mecab import MecabPreTokenizer

__all__ = ["BertJapaneseTokenizerFast", "is_bert_japanese", "load_bert_japanese_fast"]

_CONFIG_FILE = "tokenizer_config.json"
_VOCAB_FILE = "vocab.txt"
_SPECIAL_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_SPECIAL_DEFAULTS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def is_bert_japanese(name_or_dir: str) -> bool:
    """Whether a checkpoint's tokenizer_config.json names `BertJapaneseTokenizer`.

    Hub ids are looked up through the local cache only when offline; a checkpoint without the file is not one.
    """
    config = _read_config(name_or_dir)
    return config is not None and config.get("tokenizer_class") == "BertJapaneseTokenizer"


def load_bert_japanese_fast(name_or_dir: str, **kwargs: Any) -> BertJapaneseTokenizerFast:
    """Build the fast tokenizer from a checkpoint's vocab.txt and tokenizer_config.json.

    Args:
        name_or_dir: A local checkpoint directory or a hub id (resolved through the HF cache).
        **kwargs: Overrides of tokenizer_config.json entries (e.g. `model_max_length=256`).

    Raises:
        HftkError: The checkpoint is not a MeCab `BertJapaneseTokenizer`, or fugashi / its dictionary is missing.
    """
    config = _read_config(name_or_dir)
    if config is None:
        raise HftkError(f"{name_or_dir}: no {_CONFIG_FILE} found (not a local checkpoint nor a cached hub id)")
    vocab_file = _resolve(name_or_dir, _VOCAB_FILE)
    if vocab_file is None:
        raise HftkError(f"{name_or_dir}: no {_VOCAB_FILE} found next to {_CONFIG_FILE}")
    config.update(kwargs)
    return BertJapaneseTokenizerFast(vocab_file, name_or_path=str(name_or_dir), **config)


def _resolve(name_or_dir: str, filename: str) -> str | None:
    path = Path(name_or_dir) / filename
    if path.is_file():
        return str(path)
    if Path(name_or_dir).is_dir():
        return None
    from transformers.utils import cached_file

    try:
        return cached_file(
            name_or_dir,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        return None


def _read_config(name_or_dir: str) -> dict[str, Any] | None:
    path = _resolve(name_or_dir, _CONFIG_FILE)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _Backend:
    """Holds the Rust tokenizer; pickles it as JSON plus the spec that rebuilds the MeCab pre-tokeniser.

    `datasets` fingerprints a tokenizer by pickling its `__dict__`, and `tokenizers` refuses to serialise a
    Python pre-tokeniser: keeping the backend behind this object makes pickle, deepcopy and hashing work.
    """

    def __init__(self, tokenizer: Tokenizer, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.pre_tokenizer = MecabPreTokenizer(spec)
        tokenizer.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(self.pre_tokenizer)
        self.tokenizer = tokenizer

    def __reduce__(self) -> tuple[Any, ...]:
        tok = self.tokenizer
        custom, truncation, padding = tok.pre_tokenizer, tok.truncation, tok.padding
        # Truncation and padding are left out: transformers sets them at every call, and leaving them in would
        # change `datasets`' fingerprint of a tokenizer once it has been called.
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # a serialisable stand-in
        tok.no_truncation()
        tok.no_padding()
        try:
            state = tok.to_str()
        finally:
            tok.pre_tokenizer = custom
            if truncation is not None:
                tok.enable_truncation(**truncation)
            if padding is not None:
                tok.enable_padding(**padding)
        return _rebuild_backend, (state, self.spec)


def _rebuild_backend(state: str, spec: dict[str, Any]) -> _Backend:
    return _Backend(Tokenizer.from_str(state), spec)


def _build_rust_tokenizer(vocab: dict[str, int], config: dict[str, Any]) -> Tokenizer:
    unk = str(config.get("unk_token") or "[UNK]")
    if config.get("subword_tokenizer_type", "wordpiece") == "character":
        # One token per character, [UNK] per missing character (CharacterTokenizer), not per word as WordPiece.
        model = models.BPE(vocab=vocab, merges=[], unk_token=unk, fuse_unk=False)
    else:
        model = models.WordPiece(vocab=vocab, unk_token=unk, max_input_chars_per_word=100)
    tokenizer = Tokenizer(model)
    mecab_kwargs = config.get("mecab_kwargs") or {}
    if mecab_kwargs.get("normalize_text", True):
        tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cls, sep = str(config.get("cls_token") or "[CLS]"), str(config.get("sep_token") or "[SEP]")
    tokenizer.post_processor = processors.BertProcessing((sep, vocab[sep]), (cls, vocab[cls]))
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _load_vocab(vocab_file: str) -> dict[str, int]:
    # As transformers' load_vocab: one token per line, a later duplicate wins the id.
    with open(vocab_file, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


class BertJapaneseTokenizerFast(PreTrainedTokenizerFast):
    """`BertJapaneseTokenizer` (MeCab + WordPiece or characters) as a fast tokenizer: same ids, plus offsets.

    Build it with `load_bert_japanese_fast`; `save_pretrained` writes the checkpoint's Tohoku format, which
    `AutoTokenizer` loads as the slow tokenizer and `load_bert_japanese_fast` as this one.
    """

    slow_tokenizer_class = None
    # As BertTokenizerFast: BERT pairs need segment ids (the slow Japanese one returns them only when asked).
    model_input_names: ClassVar[list[str]] = ["input_ids", "token_type_ids", "attention_mask"]

    def __init__(self, vocab_file: str, **config: Any) -> None:
        word = config.get("word_tokenizer_type", "basic")
        subword = config.get("subword_tokenizer_type", "wordpiece")
        if word != "mecab" or subword not in ("wordpiece", "character"):
            raise HftkError(
                f"the fast Japanese tokenizer covers word_tokenizer_type 'mecab' with subword_tokenizer_type "
                f"'wordpiece' or 'character' (got {word!r} / {subword!r}); use AutoTokenizer's slow tokenizer"
            )
        if not config.get("do_word_tokenize", True) or not config.get("do_subword_tokenize", True):
            raise HftkError("do_word_tokenize/do_subword_tokenize false is not covered by the fast Japanese tokenizer")
        mecab_kwargs = dict(config.get("mecab_kwargs") or {})
        spec = {
            "mecab_dic": mecab_kwargs.get("mecab_dic", "unidic_lite"),
            "mecab_option": mecab_kwargs.get("mecab_option"),
            "normalize_text": mecab_kwargs.get("normalize_text", True),
            "do_lower_case": bool(config.get("do_lower_case", False)),
            "never_split": list(config.get("never_split") or []),
            "subword_tokenizer_type": subword,
        }
        vocab = _load_vocab(vocab_file)
        for key in ("unk_token", "cls_token", "sep_token"):
            token = str(config.get(key) or _SPECIAL_DEFAULTS[key])
            if token not in vocab:
                raise HftkError(f"{vocab_file}: the {key} {token!r} is not in the vocabulary")
        # Kept verbatim for save_pretrained, so a saved checkpoint has the keys the original had.
        self._ja_config = {k: v for k, v in config.items() if k != "name_or_path"}
        self.vocab_file = vocab_file
        # Set before the base __init__, which then uses it instead of deep-copying a tokenizer_object.
        self._backend = _Backend(_build_rust_tokenizer(vocab, config), spec)

        kwargs = {k: config[k] for k in ("model_max_length", "padding_side", "truncation_side") if k in config}
        for key in _SPECIAL_KEYS:
            token = config.get(key) or _SPECIAL_DEFAULTS[key]
            # normalized=False: matched in the raw text, like the slow tokenizer's trie.
            kwargs[key] = AddedToken(str(token), special=True, normalized=False)
        super().__init__(name_or_path=config.get("name_or_path", ""), **kwargs)
        extra = _extra_added_tokens(config, vocab)
        if extra:
            self.add_tokens(extra)

    # The base class reads and writes `self._tokenizer`; it lives in `_backend` so pickling goes through it.
    @property
    def _tokenizer(self) -> Tokenizer | None:
        backend = self.__dict__.get("_backend")
        return None if backend is None else backend.tokenizer

    @_tokenizer.setter
    def _tokenizer(self, value: Tokenizer) -> None:
        backend = self.__dict__["_backend"]
        if value is not backend.tokenizer:
            self.__dict__["_backend"] = _Backend(value, backend.spec)

    @property
    def do_lower_case(self) -> bool:
        return self._backend.spec["do_lower_case"]

    def mecab_words(self, text: str) -> list[str]:
        """The MeCab words of `text` as this tokenizer splits it before WordPiece (what `word_ids()` count)."""
        return [node.surface for node in self._backend.pre_tokenizer._nodes(text)]

    def clear_cache(self) -> None:
        """Forget the MeCab segmentations kept from earlier calls (benchmarks start cold with it)."""
        self._backend.pre_tokenizer._cache.clear()

    def _encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> Any:
        if not kwargs.get("is_split_into_words"):
            texts = [text] if isinstance(text, str) else list(text)
            if text_pair is not None:
                texts += [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if texts and all(isinstance(t, str) for t in texts):
                self._backend.pre_tokenizer.warm(self._split_added(texts))
        if "TOKENIZERS_PARALLELISM" in os.environ:  # the user's choice
            return super()._encode_plus(text, text_pair, **kwargs)
        # Rust's batch threads would take turns on the GIL for the MeCab callback: 2-3x slower than one thread
        # (measured on 2 cores). The variable is read at each call; unset again right after.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            return super()._encode_plus(text, text_pair, **kwargs)
        finally:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)

    def _split_added(self, texts: list[str]) -> list[str]:
        """The pieces between added tokens, as the backend will see them (only a cache warm-up: misses are ok)."""
        tokens = tuple(self.added_tokens_encoder)
        cached = getattr(self._backend, "added_re", None)
        if cached is None or cached[0] != tokens:
            regex = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
            cached = self._backend.added_re = (tokens, regex)
        split = cached[1].split
        return [piece for text in texts for piece in split(text)]

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> tuple[str, ...]:
        """Write vocab.txt, tokenizer_config.json and special_tokens_map.json in the Tohoku checkpoint format.

        No tokenizer.json: it cannot hold the MeCab step, and AutoTokenizer would load it as a plain BERT one.
        """
        if push_to_hub:
            raise HftkError("push_to_hub is not supported for the Japanese fast tokenizer: save, then upload")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        base = self._tokenizer.get_vocab(with_added_tokens=False)
        vocab_path = directory / f"{prefix}{_VOCAB_FILE}"
        vocab_path.write_text("".join(t + "\n" for t in sorted(base, key=base.get)), encoding="utf-8")

        config = {k: v for k, v in self._ja_config.items() if not k.startswith("_")}
        config["tokenizer_class"] = "BertJapaneseTokenizer"
        # transformers 5's slow BertJapaneseTokenizer returns no token_type_ids unless told: plain `pipeline()`
        # would then give a sentence-pair model all-zero segment ids, unlike the ids it was trained with.
        config["model_input_names"] = list(self.model_input_names)
        if "model_max_length" in config or self.model_max_length < VERY_LARGE_INTEGER:
            config["model_max_length"] = self.model_max_length
        added = {i: t for i, t in self.added_tokens_decoder.items() if t.content not in base}
        if added:
            config["added_tokens_decoder"] = {str(i): _added_token_dict(t) for i, t in added.items()}
        config_path = directory / f"{prefix}{_CONFIG_FILE}"
        config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

        special = {key: str(getattr(self, key)) for key in _SPECIAL_KEYS if getattr(self, key, None) is not None}
        special_path = directory / f"{prefix}special_tokens_map.json"
        special_path.write_text(json.dumps(special, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return str(config_path), str(special_path), str(vocab_path)


def _added_token_dict(token: AddedToken) -> dict[str, Any]:
    keys = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    return {k: getattr(token, k) for k in keys}


def _extra_added_tokens(config: dict[str, Any], vocab: dict[str, int]) -> list[AddedToken]:
    """Tokens a fine-tuned checkpoint added beyond vocab.txt (saved by the slow tokenizer's save_pretrained)."""
    decoder = config.get("added_tokens_decoder") or {}
    extra = []
    for _, spec in sorted(decoder.items(), key=lambda kv: int(kv[0])):
        if spec["content"] not in vocab:
            # normalized=False: the slow tokenizer matches every added token in the raw text.
            extra.append(AddedToken(**{**spec, "normalized": False}))
    return extra
