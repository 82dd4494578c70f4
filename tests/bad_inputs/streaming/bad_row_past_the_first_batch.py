"""A streamed training file with an empty label 1,400 rows in: the streaming pass that learns the labels checks
every row one batch at a time, so `hftk check` (and train, before weights load) names its line."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"data": {"train": "big.tsv", "streaming": True}, "training": {"max_steps": 5}, "labels": "~delete"},
    "expect": "big.tsv:1402: the label is empty; fill it or drop the row",
}


def setup(folder: Path) -> None:
    rows = (folder / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, body = rows[0], rows[1:]
    lines = [body[i % len(body)] for i in range(1500)]
    lines[1400] = lines[1400].rsplit("\t", 1)[0] + "\t"
    (folder / "big.tsv").write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
