"""HF_DATASETS_CACHE is a folder that cannot be written: `train` stops before loading weights, naming the folder
and what to do (`--no-cache` trains without writing there: tests/features/test_cache.py)."""

from pathlib import Path

from tests.bad_inputs.harness import set_writable

CASE = {
    "run": "train recipe.yaml",
    "env": {"HF_DATASETS_CACHE": "$CASE/cache"},
    "files": {"cache": {"dir": True}},
    "expect": [
        "cache/hftk: the features cache folder cannot be written",
        "set HF_DATASETS_CACHE to a writable folder",
        "--no-cache",
    ],
}


def setup(folder: Path) -> None:
    set_writable(folder / "cache", False)


def teardown(folder: Path) -> None:
    set_writable(folder / "cache", True)
