"""A Parquet string column holding the UTF-8 bytes of a surrogate (written by a tool that does not check): pyarrow's
UnicodeDecodeError becomes the record and column."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"data": {"train": "train.parquet", "validation": "~delete"}},
    "expect": "train.parquet: record 3: the row is not valid Unicode text (a lone surrogate \\ud800 in column "
    "'sentence')",
}


def setup(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = pa.array([b"a fine film", b"a dull film", b"odd \xed\xa0\x80 bytes"], pa.binary())
    pq.write_table(pa.table({"sentence": raw.view(pa.string()), "label": [1, 0, 0]}), folder / "train.parquet")
