"""hftk/data/text.py: plain text read with its file and line (lines, paragraphs, folders, globs, JSONL), and
the seeded held-out share."""

import pytest

from hftk import HftkError
from hftk.data.text import held_out, read_texts


def texts_of(records):
    return [r["text"] for r in records.rows]


def test_lines_paragraphs_directories_globs_and_jsonl_keep_file_and_line(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("First doc.\n\n  Second doc.  \n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "b.txt"
    b.write_text("Para one\nstill one\n\n\nPara two\n", encoding="utf-8")
    (tmp_path / "sub" / ".hidden.txt").write_text("editor backup: not a document\n", encoding="utf-8")
    c = tmp_path / "c.jsonl"
    c.write_text('{"body": "json doc", "id": 1}\n\n{"body": "another", "id": 2}\n', encoding="utf-8")

    recs = read_texts([str(a), str(tmp_path / "sub")], column="text")
    assert texts_of(recs) == ["First doc.", "Second doc.", "Para one", "still one", "Para two"]
    assert [recs.where(i) for i in (0, 1, 2, 4)] == [f"{a}:1", f"{a}:3", f"{b}:1", f"{b}:5"]

    paragraphs = read_texts(str(b), column="text", documents="paragraph")
    assert texts_of(paragraphs) == ["Para one\nstill one", "Para two"]
    assert paragraphs.where(1) == f"{b}:5"

    globbed = read_texts(str(tmp_path / "**" / "*.txt"), column="text")
    assert len(globbed) == 5 and globbed.where(4) == f"{b}:5"

    jsonl = read_texts(str(c), column="body")
    assert jsonl.rows == [{"body": "json doc"}, {"body": "another"}] and jsonl.where(1) == f"{c}:3"


@pytest.mark.parametrize(
    "name, content, pattern, expected",
    [
        ("empty.txt", b"", None, "empty.txt: no text (the file is empty or blank)"),
        ("blank.txt", b"\n  \n", None, "blank.txt: no text"),
        ("latin1.txt", "ok\ncaf\xe9\n".encode("latin-1"), None, "latin1.txt:2: not UTF-8"),
        ("rows.jsonl", b'{"text": "fine"}\n{"other": "x"}\n', None, "rows.jsonl:2: column 'text' is missing"),
        ("rows.jsonl", b'{"text": "fine"}\n{"text": 3}\n', None, "rows.jsonl:2: text must be a string"),
        ("rows.jsonl", b'{"body": "x"}\n', None, "rows.jsonl: no column 'text' (columns: body)"),
        ("a.txt", b"text\n", "*.md", "*.md: no files match this pattern"),
    ],
)
def test_bad_text_inputs_name_file_and_line(tmp_path, name, content, pattern, expected):
    path = tmp_path / name
    path.write_bytes(content)
    source = str(tmp_path / pattern) if pattern else str(path)
    with pytest.raises(HftkError) as e:
        read_texts(source, column="text")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_directory_without_data_files(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(HftkError, match="no data files in this directory"):
        read_texts(str(tmp_path), column="text")


def test_held_out_split_is_seeded_disjoint_and_keeps_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("".join(f"doc {i}\n" for i in range(40)), encoding="utf-8")
    recs = read_texts(str(path), column="text")
    train, dev = held_out(recs, 0.25, seed=7)
    assert len(dev) == 10 and len(train) == 30
    assert set(texts_of(train)).isdisjoint(texts_of(dev)) and len(set(texts_of(train) + texts_of(dev))) == 40
    assert texts_of(held_out(recs, 0.25, seed=7)[1]) == texts_of(dev)
    assert texts_of(held_out(recs, 0.25, seed=8)[1]) != texts_of(dev)
    n = int(dev.rows[3]["text"].split()[1])
    assert dev.where(3) == f"{path}:{n + 1}"
    with pytest.raises(HftkError, match="leaves no documents for validation"):
        held_out(read_texts(str(path), column="text"), 0.01, seed=0)
