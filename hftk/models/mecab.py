"""MeCab word splitting as Tohoku BERT's tokenizer does it (fugashi + a unidic dictionary), run inside the Rust
tokenizer as its pre-tokeniser with character offsets into the original text."""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from typing import Any, NamedTuple

from tokenizers import (
    NormalizedString,
    PreTokenizedString,
    normalizers,
)

from hftk.errors import HftkError

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


class MecabPreTokenizer:
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
