"""The fast Japanese tokenizer against transformers' own BertJapaneseTokenizer, on real text and edge cases."""

from __future__ import annotations

import copy
import json
import pickle
import re
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertJapaneseTokenizer

from hftk.errors import HftkError
from hftk.models.japanese import BertJapaneseTokenizerFast, is_bert_japanese, load_bert_japanese_fast
from hftk.testing.fixtures import JA_TEXT_DIR, japanese_sample_texts

EDGE_CASES = [
    "",
    " ",
    "ＡＢＣ１２３ａｂｃ　ｶﾀｶﾅ　ﾎﾞｰﾄﾞ",  # full-width Latin and digits, half-width katakana with voicing marks
    "2024年4月1日に１２，３４５円を支払った。",
    "PythonとRustでプログラミングする。iPhone 15 Pro",
    "絵文字😀👍🏽も使える🇯🇵",
    "  空白\t\tの　　連続\n\n改行 \r\n",
    "a\u2028b\rc\x85d\x0ce\x1cf",  # whitespace MeCab keeps as words; WordPiece drops them, characters do not
    "㋿元年、㈱ＮＴＴ…………",  # NFKC expansions (and U+32FF, which Python and Rust NFKC disagree on)
    "か\u3099き\u309aくe\u0301",  # combining marks
    "𠮷野家の𩸽",  # beyond the BMP, missing from the vocabulary
    "東京タワー[SEP]は高い[SEP]",
    "[UNK][MASK][PAD][CLS]x",
    "ｘ" * 150,  # a word longer than max_input_chars_per_word
    "\x00あ\x00い",  # MeCab stops at NUL
    "İstanbul ΣΑΣ",
]


@pytest.fixture(scope="module", params=["wordpiece", "char"])
def pair(request, ja_fixture, ja_char_fixture):
    """(fast, slow) tokenizers of one fixture."""
    path = ja_fixture if request.param == "wordpiece" else ja_char_fixture
    slow = AutoTokenizer.from_pretrained(path)
    assert isinstance(slow, BertJapaneseTokenizer)
    return load_bert_japanese_fast(str(path)), slow


@pytest.fixture(scope="module")
def jnli_pairs() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (JA_TEXT_DIR / "jnli_valid_head.jsonl").read_text("utf-8").splitlines()]
    return [(r["sentence1"], r["sentence2"]) for r in rows]


def test_ids_match_slow_on_real_text(pair):
    fast, slow = pair
    texts = japanese_sample_texts()
    assert fast(texts)["input_ids"] == slow(texts)["input_ids"]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_ids_match_slow_on_edge_cases(pair, text):
    fast, slow = pair
    # The slow one leaves token_type_ids out unless asked (transformers 5); BERT pairs need them.
    got, want = fast(text), slow(text, return_token_type_ids=True)
    assert got["input_ids"] == want["input_ids"], (fast.convert_ids_to_tokens(got["input_ids"]), slow.tokenize(text))
    assert got["token_type_ids"] == want["token_type_ids"]


def test_missing_characters_give_unk_like_slow(pair):
    fast, slow = pair
    ids = fast("𠮷野家の𩸽")["input_ids"]
    assert fast.unk_token_id in ids
    assert ids == slow("𠮷野家の𩸽")["input_ids"]


def test_sentence_pairs_and_truncation_match_slow(pair, jnli_pairs):
    fast, slow = pair
    first, second = (list(x) for x in zip(*jnli_pairs[:100]))
    assert fast(first, second)["input_ids"] == slow(first, second)["input_ids"]
    # Pairs whose first text leaves room for some of the second: only the second is trimmed.
    short = [i for i, ids in enumerate(fast(first, add_special_tokens=False)["input_ids"]) if len(ids) < 32]
    first, second = [first[i] for i in short], [second[i] for i in short]
    assert len(first) > 20
    got = fast(first, second, truncation="only_second", max_length=40)
    want = slow(first, second, truncation="only_second", max_length=40, return_token_type_ids=True)
    assert got["input_ids"] == want["input_ids"]
    assert got["token_type_ids"] == want["token_type_ids"]


def test_longest_first_truncation_is_the_fast_tokenizers_one(pair, jnli_pairs):
    """Rust and Python differ on ties (Rust trims the first text, Python the second): ours is Rust's, as with any
    fast tokenizer. Each text keeps a prefix, and both are trimmed to within one token of each other."""
    fast, _ = pair
    first, second = (list(x) for x in zip(*jnli_pairs[:100]))
    full_a = fast(first, add_special_tokens=False)["input_ids"]
    full_b = fast(second, add_special_tokens=False)["input_ids"]
    enc = fast(first, second, truncation=True, max_length=24)
    for ids, types, a, b in zip(enc["input_ids"], enc["token_type_ids"], full_a, full_b):
        assert len(ids) <= 24
        kept_a = [t for t, s in zip(ids[1:-1], types[1:-1]) if s == 0][:-1]  # minus the middle [SEP]
        kept_b = [t for t, s in zip(ids, types) if s == 1][:-1]
        assert kept_a == a[: len(kept_a)] and kept_b == b[: len(kept_b)]
        if len(a) + len(b) + 3 > 24 and len(kept_a) < len(a) and len(kept_b) < len(b):
            assert abs(len(kept_a) - len(kept_b)) <= 1


def test_long_text_truncates_to_model_max_length(pair):
    fast, slow = pair
    text = (JA_TEXT_DIR / "wagahai_wa_neko_de_aru.txt").read_text("utf-8")[:3000]
    got = fast(text, truncation=True)["input_ids"]
    assert len(got) == fast.model_max_length == 512
    assert got == slow(text, truncation=True)["input_ids"]


def test_literal_sep_is_the_special_token(pair):
    fast, _ = pair
    enc = fast("梅雨 [SEP] 日本で梅雨がないのは北海道", return_offsets_mapping=True)
    assert enc["input_ids"].count(fast.sep_token_id) == 2
    i = enc["input_ids"].index(fast.sep_token_id)
    assert enc["offset_mapping"][i] == (3, 8)


def test_stride_and_overflow_windows(pair):
    fast, _ = pair
    text = japanese_sample_texts()[1] * 3
    full = fast(text, add_special_tokens=False)["input_ids"]
    enc = fast(text, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)
    assert len(enc["input_ids"]) > 1
    assert set(enc["overflow_to_sample_mapping"]) == {0}
    for ids in enc["input_ids"]:
        inner = ids[1:-1]
        assert any(full[i : i + len(inner)] == inner for i in range(len(full)))


def _mark_follows(text: str, end: int) -> bool:
    return end < len(text) and (unicodedata.combining(text[end]) or text[end] in "\uff9e\uff9f")


def test_offsets_point_into_the_original_text(pair):
    fast, _ = pair
    texts = japanese_sample_texts()[:400] + EDGE_CASES
    enc = fast(texts, return_offsets_mapping=True)
    checked = 0
    for i, text in enumerate(texts):
        for token, (start, end) in zip(enc.tokens(i), enc["offset_mapping"][i]):
            if token in fast.all_special_tokens:
                continue
            span = unicodedata.normalize("NFKC", text[start:end])
            piece = token.removeprefix("##")
            checked += 1
            if span == piece:
                continue
            # One character NFKC expands ("…" -> "..."): a token inside it points at the whole character.
            expanded = piece in span and len(span) > end - start
            # A mark NFKC merged into the token's last character ("ﾎﾞ" -> "ボ"): tokenizers aligns it to the base.
            merged = _mark_follows(text, end) and unicodedata.normalize("NFKC", text[start : end + 1]) == piece
            assert expanded or merged, (text, token, start, end)
    assert checked > 10_000


def test_word_ids_are_mecab_words(ja_fixture):
    fast = load_bert_japanese_fast(str(ja_fixture))
    text = "吾輩は猫である。名前はまだ無い。"
    enc = fast(text)
    words = fast.mecab_words(text)
    word_ids = enc.word_ids()
    assert max(w for w in word_ids if w is not None) + 1 == len(words)
    for i, (token, word) in enumerate(zip(enc.tokens(), word_ids)):
        if word is not None and i > 1 and word_ids[i - 1] == word:
            assert token.startswith("##")  # a later piece of the same word
    spans = {w: enc.word_to_chars(w) for w in set(word_ids) - {None}}
    assert [text[s.start : s.end] for _, s in sorted(spans.items())] == words


def test_pickle_and_deepcopy_round_trip(pair):
    fast, _ = pair
    fast.model_max_length = 128
    texts = japanese_sample_texts()[:50]
    want = fast(texts, return_offsets_mapping=True)
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert isinstance(clone, BertJapaneseTokenizerFast)
        assert clone.model_max_length == 128
        got = clone(texts, return_offsets_mapping=True)
        assert got["input_ids"] == want["input_ids"]
        assert got["offset_mapping"] == want["offset_mapping"]
    fast.model_max_length = 512


def test_datasets_map_hashes_and_runs(ja_fixture, tmp_path):
    import datasets
    from datasets.fingerprint import Hasher

    fast = load_bert_japanese_fast(str(ja_fixture))

    def tokenize(batch):
        return fast(batch["text"], truncation=True, max_length=32)

    ds = datasets.Dataset.from_dict({"text": japanese_sample_texts()[:64]})
    out = ds.map(tokenize, batched=True)
    assert out["input_ids"][0] == fast(ds["text"][0], truncation=True, max_length=32)["input_ids"]
    # A stable fingerprint (no random fallback): the same with a freshly loaded tokenizer.
    assert Hasher.hash(fast) == Hasher.hash(load_bert_japanese_fast(str(ja_fixture)))


def test_save_pretrained_writes_the_tohoku_format(pair, tmp_path):
    fast, slow = pair
    fast.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    source = Path(fast.vocab_file).parent
    assert (tmp_path / "vocab.txt").read_bytes() == (source / "vocab.txt").read_bytes()
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text("utf-8"))
    # The checkpoint's own keys, plus the inputs a model trained by hftk takes: transformers 5's slow tokenizer
    # would otherwise give sentence pairs no token_type_ids.
    assert saved.pop("model_input_names") == ["input_ids", "token_type_ids", "attention_mask"]
    assert saved == json.loads((source / "tokenizer_config.json").read_text("utf-8"))
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(again, BertJapaneseTokenizer)
    assert again("今日は晴れ", "明日は雨")["token_type_ids"] == fast("今日は晴れ", "明日は雨")["token_type_ids"]
    texts = japanese_sample_texts()[:50]
    assert again(texts)["input_ids"] == slow(texts)["input_ids"]
    assert load_bert_japanese_fast(str(tmp_path))(texts)["input_ids"] == fast(texts)["input_ids"]


def test_is_bert_japanese(ja_fixture, tmp_path):
    assert is_bert_japanese(str(ja_fixture))
    assert not is_bert_japanese(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    assert not is_bert_japanese(str(tmp_path))


def test_lower_case_config_matches_slow(ja_fixture, tmp_path):
    shutil.copytree(ja_fixture, tmp_path / "lower")
    config_path = tmp_path / "lower" / "tokenizer_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config_path.write_text(json.dumps({**config, "do_lower_case": True}))
    fast = load_bert_japanese_fast(str(tmp_path / "lower"))
    slow = AutoTokenizer.from_pretrained(tmp_path / "lower")
    texts = ["PythonとRUSTでＰｒｏｇｒａｍｍｉｎｇ", "İstanbul ΣΑΣ", *japanese_sample_texts()[:30]]
    assert fast(texts)["input_ids"] == slow(texts)["input_ids"]


@pytest.mark.parametrize(
    ("module", "dic", "install"),
    [("fugashi", "unidic_lite", "pip install fugashi"), ("unidic_lite", "unidic_lite", "pip install unidic-lite")],
)
def test_missing_mecab_or_dictionary_says_what_to_install(ja_fixture, monkeypatch, module, dic, install):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(HftkError, match=re.escape(install)):
        load_bert_japanese_fast(str(ja_fixture))


def test_named_dictionary_missing(ja_fixture, tmp_path, monkeypatch):
    shutil.copytree(ja_fixture, tmp_path / "ipa")
    config_path = tmp_path / "ipa" / "tokenizer_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config_path.write_text(json.dumps({**config, "mecab_kwargs": {"mecab_dic": "ipadic"}}))
    monkeypatch.setitem(sys.modules, "ipadic", None)
    with pytest.raises(HftkError, match="pip install ipadic"):
        load_bert_japanese_fast(str(tmp_path / "ipa"))


def test_token_classification_pipeline_runs(ja_fixture):
    from transformers import AutoModelForTokenClassification, pipeline

    fast = load_bert_japanese_fast(str(ja_fixture))
    model = AutoModelForTokenClassification.from_pretrained(ja_fixture, num_labels=3)
    ner = pipeline("token-classification", model=model, tokenizer=fast, aggregation_strategy="simple")
    text = "レッドフォックス株式会社は、東京都千代田区に本社を置く。"
    for entity in ner(text):
        assert text[entity["start"] : entity["end"]].strip()
