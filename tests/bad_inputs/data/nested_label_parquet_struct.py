"""A Parquet label column of structs would make classes named "{'v': 'neg'}": the record, column and type found."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"data": {"train": "train.parquet", "validation": "~delete"}, "labels": "~delete"},
    "expect": (
        "train.parquet: record 1: column 'label' holds dict {'v': 'pos'}, but a label is one value (text, a number "
        "or true/false); store the label values themselves (flatten the nested column)"
    ),
}


def setup(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = pa.array([{"v": "pos"}, {"v": "neg"}])
    pq.write_table(pa.table({"sentence": ["a fine film", "a dull film"], "label": labels}), folder / "train.parquet")
