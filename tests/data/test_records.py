"""hftk/data/records.py: Records and their views; a missing column names its fix."""

import pytest

from hftk import HftkError
from hftk.data.readers import read_records
from hftk.data.records import Records, RecordsPart

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
    moved = RecordsPart(recs.source, parts[1].rows[:2], None, recs.columns, places=[parts[1].where(i) for i in (0, 1)])
    assert moved.where(1) == recs.where(301)  # what a worker process sends back names the file's line
    rows = Records("data.parquet", [{"x": 1}, {"x": 2}], None, ["x"])
    assert rows.where(1) == "data.parquet: record 2" and list(rows.batches(1))[1].where(0) == "data.parquet: record 2"
