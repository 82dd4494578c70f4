"""Multi-label labels as a Parquet list of lists: not a flat list of labels, named with the type found."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {
        "problem_type": "multi_label",
        "data": {"train": "train.parquet", "validation": "~delete"},
        "labels": "~delete",
    },
    "expect": (
        "train.parquet: record 1: column 'label' holds list [['joy'], ['anger']], but multi-label labels are a flat "
        "list of values"
    ),
}


def setup(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = pa.array([[["joy"], ["anger"]], [["joy"]]], pa.list_(pa.list_(pa.string())))
    pq.write_table(pa.table({"sentence": ["so happy", "furious joy"], "label": nested}), folder / "train.parquet")
