"""hftk/data/snapshot.py: a file read as it was checked, whether it grows, changes or is rewritten meanwhile."""

import json
import logging
import shutil

import pytest

from hftk import HftkError
from hftk.data.readers import RowStream, read_records
from hftk.data.snapshot import Snapshot
from hftk.files import file_digest

from ..helpers import DATA, head


def sst2_rows(tmp_path, suffix: str, n: int = 40):
    """n real SST-2 rows as a .tsv, .csv or .jsonl file, and those rows as read."""
    tsv = head(DATA / "en/sst2/train.tsv", tmp_path / "src.tsv", n)
    rows = read_records(tsv).rows
    path = tmp_path / f"train{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".csv":
        import datasets

        datasets.Dataset.from_list(rows).to_csv(path, index=False)
    else:
        shutil.copy(tsv, path)
    return path, rows


def appended(path, rows, times: int = 10) -> None:
    """Append the rows again `times` over, then a row that fails every check: what a writer adds mid-run."""
    text = path.read_text(encoding="utf-8")
    body = text.split("\n", 1)[1] if path.suffix != ".jsonl" else text
    bad = {".jsonl": '{"sentence": "\\ud800"\n', ".csv": "too,many,fields\n", ".tsv": "too\tmany\tfields\n"}
    with open(path, "a", encoding="utf-8") as f:
        f.write(body * times + bad[path.suffix])


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_a_stream_reads_the_rows_it_checked_when_its_file_grows(tmp_path, suffix, caplog):
    """Rows appended after the checking pass (a bad one too) are not read: each pass gives the 40 rows checked
    at their places, the row count stays 40, and the growth is reported once."""
    path, rows = sst2_rows(tmp_path, suffix)
    stream = RowStream(path)
    checked = [(p.where(i), r) for p in stream.batches(16) for i, r in enumerate(p.rows)]
    assert [r for _, r in checked] == rows
    appended(path, rows)
    with caplog.at_level(logging.WARNING, logger="hftk"):
        for _ in range(2):
            again = [(p.where(i), r) for p in stream.batches(16) for i, r in enumerate(p.rows)]
            assert again == checked
    assert len(stream) == 40 and stream.whole().rows == rows  # the whole file, read on demand, as checked too
    grew = [r.getMessage() for r in caplog.records if "grew since it was checked at start" in r.getMessage()]
    assert len(grew) == 1 and f"{path}: grew" in grew[0] and "reads only the" in grew[0]
    line = 441 if suffix == ".jsonl" else 442
    with pytest.raises(HftkError, match=rf"train{suffix}:{line}: "):  # the next run checks the new rows
        len(RowStream(path))


def edit_label(path):
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("\t0\n", "\t1\n", 1), encoding="utf-8")  # the same size: edited in place


@pytest.mark.parametrize(
    ("change", "how"),
    [
        (edit_label, "its checked bytes were rewritten"),
        (lambda p: p.write_bytes(p.read_bytes()[:-200]), "bytes now"),
        (lambda p: p.write_text("sentence\tlabel\n" + "new\t1\n" * 500, encoding="utf-8"), "rewritten"),
        (lambda p: p.unlink(), "the file is gone"),
    ],
    ids=["edited", "shortened", "replaced", "removed"],
)
def test_a_stream_stops_when_its_file_changed_otherwise(tmp_path, change, how):
    """A pass never trains on rows that were not checked: any change but an append stops it, naming the file."""
    path, _ = sst2_rows(tmp_path, ".tsv")
    stream = RowStream(path)
    assert len(stream) == 40
    change(path)
    with pytest.raises(HftkError, match=rf"^{path}: changed since it was checked at start \(.*{how}.*\); a run"):
        next(stream.batches())


def test_a_parquet_file_rewritten_with_more_rows_stops_the_stream(tmp_path):
    """Parquet cannot be appended to: a file with more rows is a new file, whose rows were never checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_records(head(DATA / "en/sst2/train.tsv", tmp_path / "t.tsv", 40)).rows
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    stream = RowStream(tmp_path / "train.parquet")
    assert len(stream) == 40
    pq.write_table(pa.Table.from_pylist(rows * 2), tmp_path / "train.parquet")
    with pytest.raises(HftkError, match=r"train\.parquet: changed since it was checked at start"):
        next(stream.batches())


def test_a_json_document_is_held_so_a_later_change_does_not_matter(tmp_path):
    rows = [{"sentence": f"film {i}", "label": i % 2} for i in range(5)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    stream = RowStream(path)
    path.write_text("[]", encoding="utf-8")
    assert [r for p in stream.batches() for r in p.rows] == rows


def test_a_snapshot_digests_the_checked_bytes_only(tmp_path):
    """What a cache entry of a grown file is keyed by: the bytes read, not the bytes there now."""
    path, rows = sst2_rows(tmp_path, ".tsv")
    original = tmp_path / "copy.tsv"
    shutil.copy(path, original)
    snapshot = Snapshot.take(path)
    assert snapshot.digest() == file_digest(path)
    appended(path, rows)
    assert snapshot.digest() == file_digest(original) != file_digest(path)
