"""A Parquet map column as the label: a list of (key, value) pairs to Python, never one label."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"data": {"train": "train.parquet", "validation": "~delete"}, "labels": "~delete"},
    "expect": "train.parquet: record 1: column 'label' holds list [('v', 'pos')], but a label is one value",
}


def setup(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = pa.array([[("v", "pos")], [("v", "neg")]], pa.map_(pa.string(), pa.string()))
    pq.write_table(pa.table({"sentence": ["a fine film", "a dull film"], "label": labels}), folder / "train.parquet")
