"""hftk/data/conll.py: CoNLL column files as one row per sentence, each at its first line."""

import pytest

from hftk import HftkError
from hftk.data.conll import read_conll

from ..helpers import SHARED


def test_sentences_keep_their_first_line_and_the_chosen_tag_column(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n")
    records = read_conll(p)
    assert records.rows == [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
        {"tokens": ["Peter"], "tags": ["B-PER"]},
    ]
    assert records.lines == [3, 7] and records.columns == ["tokens", "tags"]
    chunks = read_conll(p, tag_column=2, tokens="words", tags="chunks")
    assert chunks.rows[0] == {"words": ["EU", "rejects"], "chunks": ["B-NP", "B-VP"]}


def test_the_real_conll_file_reads_whole():
    path = SHARED / "en/conll2003/valid.txt"  # the shared data sets beside the checkout, as in CI
    if not path.is_file():
        pytest.skip("CoNLL-2003 (../shared/data) is not beside this checkout")
    records = read_conll(path)
    assert len(records) == 3250 and records.rows[0]["tokens"][:3] == ["CRICKET", "-", "LEICESTERSHIRE"]
    assert records.lines[0] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EU NNP B-NP B-ORG\nrejects B-VP O\n", r"bad.txt:2: 3 columns, the sentence's first line has 4"),
        ("EU\n", r"bad.txt:1: 1 column\(s\), need at least 2 \(the token and the tag in column -1\)"),
    ],
)
def test_a_ragged_line_is_named(tmp_path, text, message):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(HftkError, match=message):
        read_conll(tmp_path / "bad.txt")
    with pytest.raises(HftkError, match="not found"):
        read_conll(tmp_path / "missing.txt")
