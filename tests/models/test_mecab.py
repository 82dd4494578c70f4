"""hftk/models/mecab.py: MeCab words as Tohoku BERT's tokenizer splits text, offsets into the original text, and
the install hint when MeCab or a dictionary is missing."""

import pytest
from tokenizers import PreTokenizedString

from hftk import HftkError
from hftk.models.mecab import MecabPreTokenizer, mecab_args, mecab_tagger

SPEC = {
    "mecab_dic": "unidic_lite",
    "mecab_option": None,
    "do_lower_case": False,
    "never_split": None,
    "subword_tokenizer_type": "wordpiece",
    "normalize_text": True,
}


def test_words_are_mecabs_and_point_into_the_text():
    text = "東京都に住んでいる。 ＡＢＣ"  # full-width ASCII: NFKC changes it, the offsets still point at the original
    words = [w.surface for w in mecab_tagger()(text)]
    assert "".join(words) == text.replace(" ", "") and len(words) >= 6
    split = PreTokenizedString(text)
    MecabPreTokenizer(SPEC).pre_tokenize(split)
    pieces = split.get_splits()
    assert [text[start:end] for _, (start, end), *_ in pieces] == words


def test_a_dictionary_not_installed_names_the_package():
    assert "-d " in mecab_args("unidic_lite", None) and mecab_args(None, "-Owakati") == "-Owakati"
    with pytest.raises(HftkError, match=r"mecab_kwargs.mecab_dic='jumandic' is not one of"):
        mecab_args("jumandic", None)
