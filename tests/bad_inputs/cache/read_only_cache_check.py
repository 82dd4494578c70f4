"""HF_DATASETS_CACHE is a folder that cannot be written: `check` says so, as train would, and how to go on."""

from pathlib import Path

from tests.bad_inputs.harness import set_writable

CASE = {
    "run": "check recipe.yaml",
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
