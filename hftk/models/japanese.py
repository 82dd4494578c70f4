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

import functools
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from tokenizers import (
    AddedToken,
    NormalizedString,
    PreTokenizedString,
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
# pip packages that provide each MeCab dictionary `mecab_kwargs.mecab_dic` can name.
_DIC_PACKAGES = {"unidic_lite": "unidic-lite", "unidic": "unidic", "ipadic": "ipadic"}
# The slow WordPiece path splits MeCab surfaces with str.split(): Python whitespace other than what MeCab itself
# skips (space, tab, newline, VT) can reach it as a "word" (e.g. "\r", "\u2028") and must then vanish.
_ODD_SPACE = re.compile(r"[^\S \t\n\x0b]")
# Word starts are marked by swapping their first character for one of the same UTF-8 length (NormalizedString.map
# miscounts alignments when the length changes); a text that already holds a marker takes the slicing path.
_MARKERS = {1: "\x01", 2: "\u0378", 3: "\ufdd0", 4: "\U0010ffff"}
_HAS_MARKER = re.compile("[" + "".join(_MARKERS.values()) + "]")
# Separates MeCab's words in its output; texts holding it, a marker or odd whitespace walk MeCab's nodes instead.
_SEP = "\x02"
_UNSAFE = re.compile(_ODD_SPACE.pattern + "|[" + _SEP + "".join(_MARKERS.values()) + "]")
_MECAB_SPACE = " \t\n\x0b"  # what MeCab skips between words (the dictionaries' SPACE class)
_HAS_MECAB_SPACE = re.compile("[" + _MECAB_SPACE + "]")


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


def mecab_args(mecab_dic: str | None, mecab_option: str | None) -> str:
    """The tagger arguments `MecabTokenizer` builds, with errors that name the pip package to install."""
    try:
        import fugashi  # noqa: F401
    except ImportError:
        raise HftkError("Japanese BERT tokenizers need MeCab: pip install fugashi") from None
    option = mecab_option or ""
    if mecab_dic is None:
        return option
    if mecab_dic not in _DIC_PACKAGES:
        raise HftkError(f"mecab_kwargs.mecab_dic={mecab_dic!r} is not one of {sorted(_DIC_PACKAGES)}")
    package = _DIC_PACKAGES[mecab_dic]
    try:
        module = __import__(mecab_dic)
    except ImportError:
        raise HftkError(
            f"this tokenizer needs the MeCab dictionary {mecab_dic!r}: pip install {package}"
            + (" && python -m unidic download" if mecab_dic == "unidic" else "")
        ) from None
    dic_dir = module.DICDIR
    if not os.path.isdir(dic_dir):
        raise HftkError(f"the {mecab_dic} package has no dictionary files yet: python -m unidic download")
    return f'-d "{dic_dir}" -r "{os.path.join(dic_dir, "mecabrc")}" {option}'


def mecab_tagger(mecab_dic: str = "unidic_lite") -> Any:
    """A fugashi tagger splitting text into the MeCab words of Tohoku BERT's tokenizer (unidic-lite by default)."""
    import fugashi

    return fugashi.GenericTagger(mecab_args(mecab_dic, None))


@functools.cache
def _nfkc_fixes() -> dict[str, str]:
    """Characters that Python's and the `tokenizers` NFKC normalise differently (their Unicode versions differ).

    The slow tokenizer uses Python's; e.g. U+32FF (the Reiwa era square) is "令和" there but unchanged in Rust.
    """
    chars = [chr(cp) for cp in range(0x110000) if unicodedata.decomposition(chr(cp))]
    rust = normalizers.NFKC().normalize_str("\x00".join(chars)).split("\x00")
    fixes = {}
    for char, theirs in zip(chars, rust):
        ours = unicodedata.normalize("NFKC", char)
        if ours != theirs:
            fixes[char] = ours
    return fixes


class _MecabPreTokenizer:
    """Splits NFKC text into MeCab words, as `MecabTokenizer.tokenize` and the subword step see them.

    Speed is the point (the slow tokenizer's own MeCab call is a third of its time): MeCab prints bare surfaces,
    each text is segmented once (cached, and for a batch before the threaded Rust call, where a Python callback
    contends for the GIL), and the words are cut in Rust rather than by a Python slice per word (see `_split`).
    """

    _CACHE_SIZE = 50_000

    def __init__(self, spec: dict[str, Any]) -> None:
        args = mecab_args(spec["mecab_dic"], spec["mecab_option"])  # first: it explains a missing fugashi
        import fugashi

        # Output format only, the segmentation is the slow tokenizer's (same dictionary, same options).
        # "B|w1| w2|...|wn|E" with | = _SEP and %M = the word after the whitespace MeCab skipped before it;
        # fugashi strips the output, the B/E marks keep whitespace-like first and last words.
        self._tagger = fugashi.GenericTagger(
            args + f' -O "" --node-format=%M{_SEP} --unk-format=%M{_SEP} --bos-format=B{_SEP} --eos-format=E'
        )
        self._nodes = fugashi.GenericTagger(args)
        self._lower = spec["do_lower_case"]
        self._never_split = set(spec["never_split"] or ())
        self._char = spec["subword_tokenizer_type"] == "character"
        self._normalize = spec["normalize_text"]
        fixes = _nfkc_fixes() if self._normalize else {}
        self._fixes = fixes
        self._fix_re = re.compile("[" + re.escape("".join(fixes)) + "]") if fixes else None
        self._cache: dict[str, _Segmentation] = {}
        # Per-word Python slicing where the slow tokenizer treats words one by one beyond splitting them.
        self._slice_only = bool(self._never_split and self._lower) or (self._char and not self._normalize)

    def segment(self, text: str) -> _Segmentation:
        """The words of a normalised text, cached."""
        seg = self._cache.get(text)
        if seg is None:
            seg = self._segment(text)
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            self._cache[text] = seg
        return seg

    def warm(self, texts: list[str]) -> None:
        """Segment a batch now rather than inside the threaded Rust call."""
        nfkc = unicodedata.normalize
        for text in texts:
            self.segment(nfkc("NFKC", text) if self._normalize else text)

    def _segment(self, text: str) -> _Segmentation:
        if not self._slice_only and not _UNSAFE.search(text):
            # Each item: the whitespace MeCab skipped before a word, then the word.
            layout = _layout(text, self._tagger.parse(text).split(_SEP)[1:-1])
            if layout is not None:
                return _Segmentation(None, layout)
        spans = []
        pos = 0
        for node in self._nodes(text):
            pos += len(node.white_space)
            spans.append((pos, pos + len(node.surface)))
            pos += len(node.surface)
        if not self._char and _ODD_SPACE.search(text):
            # WordPiece splits each MeCab word with str.split(): whitespace-only "words" vanish.
            spans = [(a + m.start(), a + m.end()) for a, b in spans for m in re.finditer(r"\S+", text[a:b])]
        return _Segmentation(spans, None)

    def _split(self, _: int, normalized: NormalizedString) -> list[NormalizedString]:
        text = normalized.normalized
        if self._fix_re is not None and self._fix_re.search(text):
            for char in set(self._fix_re.findall(text)):
                normalized.replace(char, self._fixes[char])
            text = normalized.normalized
        if not text:
            return []
        spans, layout = self.segment(text)
        if layout is None:
            return self._split_by_slicing(normalized, spans)
        # A Python slice of a NormalizedString per word costs ~2 µs plus O(len(text)). Instead, in Rust, where
        # alignments stay exact: 1. mark the first character of each word (a 1:1 map, offsets untouched),
        marked, spaced = layout
        normalized.map(functools.partial(next, iter(marked)))
        # 2. put a space before each mark,
        for marker in _MARKERS.values():
            if marker in marked:
                normalized.replace(marker, " " + marker)
        # 3. unmark, and blank the whitespace MeCab skipped,
        normalized.map(functools.partial(next, iter(spaced)))
        if self._lower:
            normalized.lowercase()
        # 4. cut at the spaces.
        return normalized.split(" ", "removed")

    def _split_by_slicing(self, normalized: NormalizedString, spans: list[tuple[int, int]]) -> list[NormalizedString]:
        pieces = [normalized.slice(span) for span in spans]
        if self._lower:
            for piece in pieces:
                if piece.normalized not in self._never_split:
                    piece.lowercase()
        if self._char:
            # CharacterTokenizer normalises each word again (a no-op after NFKC, not when normalize_text=False).
            for piece in pieces:
                piece.nfkc()
        return pieces

    def pre_tokenize(self, pretok: PreTokenizedString) -> None:
        pretok.split(self._split)


class _Segmentation(NamedTuple):
    spans: list[tuple[int, int]] | None  # (start, end) of each word; None when the layout says it all
    layout: tuple[str, str] | None  # (marked, spaced) text for the fast split; None: slice word by word


@functools.cache
def _marker(char: str) -> str:
    return _MARKERS[len(char.encode())]


def _layout(text: str, items: list[str]) -> tuple[str, str] | None:
    """The text with word starts marked, and with a space before each word; None where MeCab's output is not
    the text (a NUL cut it short) or a skipped space is not one byte (it cannot become " " in place)."""
    joined = "".join(items)
    if joined == text and not _HAS_MECAB_SPACE.search(text):  # the common case: no spaces at all
        marked = [items[0]] if items else []
        marked += [_marker(w[0]) + w[1:] for w in items[1:]]
        return "".join(marked), " ".join(items)
    tail = text[len(joined) :]
    if not text.startswith(joined) or tail.strip(_MECAB_SPACE) or not tail.isascii():
        return None
    marked = []
    spaced = []
    for item in items:
        word = item.lstrip(_MECAB_SPACE)
        gap = item[: len(item) - len(word)]
        if gap:
            if not gap.isascii():
                return None
            marked.append(gap)
            spaced.append(" " * len(gap))
        if marked:
            marked.append(_marker(word[0]) + word[1:])
            spaced.append(" " + word)
        else:  # nothing to separate it from, and an insertion at 0 breaks later NormalizedString edits
            marked.append(word)
            spaced.append(word)
    marked.append(tail)
    spaced.append(" " * len(tail))
    return "".join(marked), "".join(spaced)


class _Backend:
    """Holds the Rust tokenizer; pickles it as JSON plus the spec that rebuilds the MeCab pre-tokeniser.

    `datasets` fingerprints a tokenizer by pickling its `__dict__`, and `tokenizers` refuses to serialise a
    Python pre-tokeniser: keeping the backend behind this object makes pickle, deepcopy and hashing work.
    """

    def __init__(self, tokenizer: Tokenizer, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.pre_tokenizer = _MecabPreTokenizer(spec)
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
