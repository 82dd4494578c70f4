"""`--folds --resume` with another max_length and learning rate than the stored folds: one mean ± sd cannot mix
them, so it is refused, naming each change."""

from pathlib import Path

CASE = {
    "run": "train recipe.yaml --folds 2 --resume --set training.learning_rate=2e-4",
    "expect": [
        "out: the cross-validation there was trained with other settings (max_length 128 -> 64, "
        "training.learning_rate 5e-05 -> 0.0002)",
        "start anew with --overwrite, or choose another --output",
    ],
}


def setup(folder: Path) -> None:
    import json

    from hftk.runs.folder import trained_with
    from hftk.runs.folds import NOT_RECORDED
    from hftk.tasks import load_recipe

    recipe = load_recipe(folder / "recipe.yaml", {"max_length": 128})
    record = {"folds": 2, "per_fold": [], "trained_with": trained_with(recipe, NOT_RECORDED)}
    (folder / "out").mkdir()
    (folder / "out" / "metrics.json").write_text(json.dumps(record))
