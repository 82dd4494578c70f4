import json

import pytest

from hftk import HftkError
from hftk.data.readers import RowStream, read_records
from hftk.errors import lone_surrogate

from ..helpers import DATA


def test_tsv_with_bom_and_bare_quotes_reads_every_row():
    # MRPC is GLUE TSV: a UTF-8 BOM before the header and unbalanced " inside fields.
    recs = read_records(DATA / "en/mrpc/dev.tsv")
    assert len(recs) == 408
    assert recs.columns[0] == "Quality"
    assert recs.where(0).endswith("dev.tsv:2")
    assert any('"' in r["#1 String"] for r in recs.rows)


def test_headerless_tsv_with_column_names():
    recs = read_records(DATA / "en/goemotions/dev.tsv", column_names=["text", "labels", "id"])
    assert len(recs) == 5426 and recs.rows[0]["labels"].replace(",", "").isdigit()


def test_csv_json_jsonl_parquet_and_saved_dataset_agree(tmp_path):
    import datasets

    rows = [{"text": 'good, "very" good', "label": "pos"}, {"text": "bad", "label": "neg"}]
    ds = datasets.Dataset.from_list(rows)
    ds.to_csv(tmp_path / "a.csv", index=False)
    ds.to_json(tmp_path / "a.jsonl")
    ds.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "cols.json").write_text(json.dumps({"text": [r["text"] for r in rows], "label": ["pos", "neg"]}))
    ds.save_to_disk(tmp_path / "saved")
    for name in ("a.csv", "a.jsonl", "a.parquet", "a.json", "cols.json", "saved"):
        assert read_records(tmp_path / name).rows == rows, name


@pytest.mark.parametrize("name", ["a.csv", "a.tsv", "a.jsonl", "a.json", "a.parquet", "saved"])
def test_a_row_stream_reads_what_read_records_reads_a_batch_at_a_time(tmp_path, name):
    """Streaming reads each format row by row, pass after pass, with every row's place as read_records gives it."""
    import datasets

    rows = [{"text": f"row {i}, 'quoted' \"x\"", "label": str(i % 3)} for i in range(7)]
    ds = datasets.Dataset.from_list(rows)
    ds.to_csv(tmp_path / "a.csv", index=False)
    ds.to_csv(tmp_path / "a.tsv", index=False, sep="\t", quoting=3)
    ds.to_json(tmp_path / "a.jsonl")
    ds.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.json").write_text(json.dumps(rows))
    ds.save_to_disk(tmp_path / "saved")
    whole = read_records(tmp_path / name)
    stream = RowStream(tmp_path / name)
    for _ in range(2):  # every pass reads the file anew
        parts = list(stream.batches(3))
        assert [len(p) for p in parts] == [3, 3, 1]
        assert [r for p in parts for r in p.rows] == whole.rows == rows
        assert [p.where(i) for p in parts for i in range(len(p))] == [whole.where(i) for i in range(7)]
    assert len(stream) == 7 and stream.columns == ["text", "label"]
    assert stream.whole().rows == rows and stream.whole().where(6) == whole.where(6)  # read whole on demand


def test_a_row_stream_finds_a_bad_row_when_its_pass_reaches_it(tmp_path):
    body = "".join(f"film {i},{i % 2}\n" for i in range(2500))
    path = tmp_path / "big.csv"
    path.write_text("text,label\n" + body.replace("film 2100,", "film, 2100,"), encoding="utf-8")
    stream = RowStream(path)  # opening reads the header only
    passed = []
    with pytest.raises(HftkError, match=r"big.csv:2102: 3 fields, the header has 2"):
        for part in stream.batches(1000):
            passed.append(len(part))
    assert passed == [1000, 1000]
    (tmp_path / "empty.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(HftkError, match=r"empty.csv: no records in the file"):
        len(RowStream(tmp_path / "empty.csv"))


def test_jsonl_named_json_is_read_as_lines(tmp_path):
    p = tmp_path / "valid.json"
    p.write_text('{"a": 1}\n{"a": 2}\n')
    assert [r["a"] for r in read_records(p).rows] == [1, 2]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("ragged.tsv", "sentence\tlabel\nok\t1\ntoo\tmany\tfields\n", "ragged.tsv:3: 3 fields, the header has 2"),
        ("bad.jsonl", '{"a": 1}\n{"a": \n', "bad.jsonl:2: invalid JSON"),
        ("empty.csv", "", "empty.csv: no records in the file"),
        ("header_only.tsv", "sentence\tlabel\n", "header_only.tsv: no records in the file"),
        ("list.jsonl", "[1, 2]\n", "list.jsonl:1: expected a JSON object per line"),
        ("data.xlsx", "x", "unknown data format '.xlsx'"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, name, content, expected):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(HftkError) as e:
        read_records(p)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_non_utf8_names_line(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(HftkError, match=r"latin1.tsv:2: not UTF-8 .* re-save the file as UTF-8"):
        read_records(p)


def test_missing_file_and_dataset_dict(tmp_path):
    import datasets

    with pytest.raises(HftkError, match="data file not found"):
        read_records(tmp_path / "nope.tsv")
    d = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"a": 1}])})
    d.save_to_disk(tmp_path / "dd")
    with pytest.raises(HftkError, match="a DatasetDict with splits train; name one split"):
        read_records(tmp_path / "dd")


# ------------------------------------------------------------------------------------------------ text as Unicode


def test_lone_surrogates_are_found_anywhere_and_pairs_are_text():
    assert lone_surrogate("a \ud800 b") == "\\ud800"
    assert lone_surrogate({"k": [1, {"x\udfff": 2}]}) == "\\udfff"  # keys too
    assert lone_surrogate(["a", "\U0001f600", 3, None]) is None
    assert json.loads('"\\ud83d\\ude00"') == "\U0001f600"  # why a surrogate pair in JSON is fine


def test_json_with_escaped_emoji_reads_and_a_lone_half_is_named(tmp_path):
    """Python's json.dumps escapes every non-ASCII character (emoji as surrogate pairs): such files read as they
    are; a lone half of a pair is a located error in JSON Lines and JSON documents alike."""
    rows = [{"sentence": "great \U0001f600 film", "label": 1}, {"sentence": "caf\u00e9 \\ud800", "label": 0}]
    (tmp_path / "ok.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_records(tmp_path / "ok.jsonl").rows == rows
    (tmp_path / "ok.json").write_text(json.dumps(rows, indent=1))
    assert read_records(tmp_path / "ok.json").rows == rows
    lone = [rows[0], {"sentence": "half \ud83d of it", "label": 0}]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lone))
    with pytest.raises(HftkError, match=r"^\S*bad.jsonl:2: the row is not valid Unicode text \(a lone surrogate "):
        read_records(tmp_path / "bad.jsonl")
    (tmp_path / "bad.json").write_text(json.dumps(lone, indent=1))
    with pytest.raises(HftkError, match=r"bad.json:7: .*\\ud83d in column 'sentence'"):
        read_records(tmp_path / "bad.json")


def test_a_saved_dataset_with_bytes_that_are_not_utf8_names_the_record(tmp_path):
    import datasets
    import pyarrow as pa

    raw = pa.array([b"fine", b"fine too", b"\xed\xb0\x80"], pa.binary()).view(pa.string())
    datasets.Dataset(pa.table({"sentence": raw, "label": [0, 1, 0]})).save_to_disk(tmp_path / "saved")
    with pytest.raises(HftkError, match=r"saved: record 3: .*lone surrogate \\udc00 in column 'sentence'"):
        read_records(tmp_path / "saved")
