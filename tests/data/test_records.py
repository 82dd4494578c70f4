"""hftk/data/records.py: Records and their views; a missing column names its fix."""

import pickle

import pytest

from hftk import HftkError
from hftk.data.readers import RowStream, read_records
from hftk.data.records import Records

from ..helpers import DATA


def test_missing_column_says_how_to_map_it():
    recs = read_records(DATA / "en/sst2/dev.tsv")
    with pytest.raises(
        HftkError, match=r"no column 'text' \(columns: sentence, label\); set data.columns.text: <column>"
    ):
        recs.column("text", "text")
    with pytest.raises(HftkError, match="no column 'txt' for 'text'"):
        recs.column("txt", "text")


def test_every_view_says_where_its_rows_came_from():
    recs = read_records(DATA / "en/sst2/dev.tsv")  # a header line, then row i on line i + 2
    parts = list(recs.batches(300))
    assert [len(p) for p in parts] == [300, 300, 272]
    assert parts[2].where(0) == f"{recs.source}:{602}" == recs.where(600)
    moved = Records(recs.source, parts[1].rows[:2], None, recs.columns, places=[parts[1].where(i) for i in (0, 1)])
    assert moved.where(1) == recs.where(301)  # what a worker process sends back names the file's line
    rows = Records("data.parquet", [{"x": 1}, {"x": 2}], None, ["x"])
    assert rows.where(1) == "data.parquet: record 2" and list(rows.batches(1))[1].where(0) == "data.parquet: record 2"


def test_records_are_known_by_their_files_and_rows_not_by_how_they_were_made(tmp_path):
    """`origin` (the features cache's key): a stream's rows read whole are the file's rows; a subset, a batch or
    a join is known by the files it views and which of their rows, and rows from no file have no origin."""
    path = DATA / "en/sst2/dev.tsv"
    recs = read_records(path)
    assert recs.origin() == RowStream(path).whole().origin() == read_records(path).origin()
    first = recs.subset(range(10))
    assert first.origin() == recs.subset(list(range(10))).origin() == next(recs.batches(10)).origin()
    assert first.origin() not in (recs.subset(range(1, 11)).origin(), recs.origin())
    joined = Records.join("both", [recs, first])
    assert joined.where(len(recs) + 2) == recs.where(2) and len(joined) == len(recs) + 10
    assert joined.origin() not in (None, recs.origin())
    handed = Records("<inputs>", [{"sentence": "x", "label": "1"}], None, ["sentence", "label"])
    assert handed.origin() is None and Records.join("mixed", [recs, handed]).origin() is None


def test_a_streamed_batch_carries_its_places_to_another_process():
    stream = RowStream(DATA / "en/sst2/dev.tsv")
    part = list(stream.batches(300))[1]
    moved = pickle.loads(pickle.dumps(part))
    assert moved.rows == part.rows and moved.where(0) == stream.whole().where(300)
