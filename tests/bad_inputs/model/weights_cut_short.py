"""A model.safetensors cut short (a copy interrupted, a disk filled) or emptied: one line naming the file, from
`hftk embed` (and every other command that loads weights), not a traceback from the Rust loader."""

from pathlib import Path

CASE = {
    "run": "embed ./minilm --input in.txt --output vectors.npy",
    "files": {"minilm": {"copy": "$MINILM"}, "in.txt": "a fine film\n"},
    "expect": "minilm/model.safetensors: damaged or cut short (its header or tensors do not read back)",
}


def setup(folder: Path) -> None:
    weights = folder / "minilm" / "model.safetensors"
    head = weights.read_bytes()[:100_000]
    weights.unlink()  # the case folder links big files to the package's: never write through the link
    weights.write_bytes(head)
