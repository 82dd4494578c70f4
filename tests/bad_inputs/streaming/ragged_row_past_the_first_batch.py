"""A streamed training CSV whose row 1,200 has a stray comma: found by the streaming pass, at its line."""

from pathlib import Path

CASE = {
    "run": "train recipe.yaml",
    "recipe": {"data": {"train": "big.csv", "streaming": True}, "training": {"max_steps": 5}},
    "expect": "big.csv:1201: 3 fields, the header has 2; fix the row (a stray comma or quote?)",
}


def setup(folder: Path) -> None:
    rows = (folder / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    lines = ['"' + r.rsplit("\t", 1)[0].replace('"', '""') + '",' + r.rsplit("\t", 1)[1] for r in rows]
    lines = [lines[i % len(lines)] for i in range(1500)]
    lines[1199] += ",1"
    (folder / "big.csv").write_text("\n".join(["sentence,label", *lines]) + "\n", encoding="utf-8")
