"""A Parquet string column holding bytes that are not UTF-8 at all (Latin-1): the record, column and byte, not
pyarrow's UnicodeDecodeError."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"data": {"train": "train.parquet", "validation": "~delete"}},
    "expect": "train.parquet: record 2: column 'sentence' holds text that is not UTF-8 (byte 7 of the value)",
}


def setup(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.array([b"a fine film", "un café".encode("latin-1")], pa.binary())
    pq.write_table(pa.table({"sentence": raw.view(pa.string()), "label": [1, 0]}), folder / "train.parquet")
