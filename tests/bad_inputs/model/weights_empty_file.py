"""An empty model.safetensors: found by `hftk check` before any weights load."""

from pathlib import Path

CASE = {
    "run": "check recipe.yaml",
    "recipe": {"model": "./minilm"},
    "files": {"minilm": {"copy": "$MINILM"}},
    "expect": "minilm/model.safetensors: damaged or cut short",
}


def setup(folder: Path) -> None:
    weights = folder / "minilm" / "model.safetensors"
    weights.unlink()  # the case folder links big files to the package's: never write through the link
    weights.write_bytes(b"")
